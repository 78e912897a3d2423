"""Convolutional networks on NHWC images: sequential CNNs (classifiers, autoencoders, a GAN's two
networks) and ResNets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, cast

import numpy as np

from spec.data import digits
from spec.errors import SpecError
from spec.layers import (
    LAYER_TYPES,
    Act,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    Pool2D,
    Reshape,
    layer_flops,
    layer_output_shape,
)
from spec.models.base import ModelSpec, check_sequence
from spec.validation import check_positive_int

Pair = tuple[int, int]  # a window or stride, made a pair by its layer's __post_init__


def _check_image_shape(shape: object) -> tuple[int, int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise SpecError("input_shape", shape, "(height, width, channels), NHWC without the batch axis")
    for i, n in enumerate(shape):
        check_positive_int(f"input_shape[{i}]", n)
    height, width, channels = shape
    return height, width, channels


def _check_cnn_input_shape(shape: object) -> tuple[int, ...]:
    """An image (height, width, channels), or a vector (size,) for a network that starts with Dense
    layers and reshapes them into an image (a generator)."""
    if isinstance(shape, (tuple, list)) and len(shape) == 1:
        check_positive_int("input_shape[0]", shape[0])
        return (int(shape[0]),)
    return _check_image_shape(shape)


@dataclass(frozen=True)
class CNNSpec(ModelSpec):
    """A sequential convolutional network on NHWC images: image layers (Conv2D, ConvTranspose2D,
    Pool2D, BatchNorm, Act, Dropout) and vector layers (Dense, with Act, BatchNorm, Dropout), joined
    by Flatten or GlobalAvgPool (image → vector) and Reshape (vector → image). Its input is an image,
    or a vector (a generator's latent code). The last layer gives the logits, which
    ``output_activation`` turns into outputs: a Dense layer (a classifier's scores), or a Conv2D or
    ConvTranspose2D (an image, e.g. an autoencoder's reconstruction, sigmoid per pixel)."""

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    output_activation: str

    kind: ClassVar[str] = "cnn"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _check_cnn_input_shape(self.input_shape))
        object.__setattr__(
            self, "layers", check_sequence("layers", self.layers, "a sequence of layer specs from spec.layers")
        )
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LAYER_TYPES):
                raise SpecError(f"layers[{i}]", layer, [t.__name__ for t in LAYER_TYPES])
        if not self.layers or not isinstance(self.layers[-1], (Dense, Conv2D, ConvTranspose2D)):
            raise SpecError(
                "layers", self.layers[-1:] or "()", "a last Dense, Conv2D or ConvTranspose2D layer giving the logits"
            )
        self.shapes()  # checks the order of the layers and that every window fits
        if len(self.output_shape) == 3 and self.output_activation == "softmax":
            raise SpecError("output_activation", "softmax", "sigmoid or linear for an image output (per pixel)")
        super().__post_init__()

    def shapes(self) -> list[tuple[int, ...]]:
        """The input shape of every layer and, last, the output shape (without the batch axis)."""
        shapes = [self.input_shape]
        for i, layer in enumerate(self.layers):
            try:
                shapes.append(layer_output_shape(layer, shapes[-1]))
            except SpecError as exc:
                detail = "" if exc.field == "layers" else f" {exc.field}"
                raise SpecError(
                    f"layers[{i}] ({type(layer).__name__}) of {self.name}{detail}", exc.value, exc.allowed
                ) from None
        return shapes

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One example's output: (units,) after a Dense layer, (height, width, channels) after a conv."""
        return self.shapes()[-1]

    @property
    def output_size(self) -> int:
        return math.prod(self.output_shape)

    @property
    def has_dropout(self) -> bool:
        return any(isinstance(layer, Dropout) and layer.rate > 0 for layer in self.layers)

    def example_batch(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Digit images and their targets; for a network from a vector to an image (a decoder, a
        generator), Gaussian codes and test digits of its output's shape."""
        if len(self.input_shape) > 1:
            return super().example_batch(size, seed)
        codes = np.random.default_rng(seed).standard_normal((size, *self.input_shape)).astype(np.float32)
        return codes, digits(self.output_shape).x_test[:size]

    def describe(self) -> str:
        """One line a person can read, e.g. ``28×28×1 conv32/3 relu maxpool2 … dense10 (softmax)``."""
        parts = ["×".join(map(str, self.input_shape))]
        for layer in self.layers:
            match layer:
                case Conv2D() | ConvTranspose2D():
                    kind = "conv" if isinstance(layer, Conv2D) else "deconv"
                    strides, window = cast(Pair, layer.strides), cast(Pair, layer.kernel_size)
                    stride = f"/s{strides[0]}" if strides != (1, 1) else ""
                    pad = (
                        ""
                        if layer.padding == "valid"
                        else f" {layer.padding}"
                        if isinstance(layer.padding, str)
                        else " pad"
                    )
                    parts.append(f"{kind}{layer.filters}/{window[0]}{stride}{pad}")
                case Pool2D():
                    parts.append(f"{layer.kind}pool{cast(Pair, layer.pool_size)[0]}")
                case BatchNorm():
                    parts.append("bn")
                case Act():
                    parts.append(str(layer.activation))
                case Flatten():
                    parts.append("flatten")
                case Reshape():
                    parts.append("reshape" + "×".join(map(str, layer.target_shape)))
                case GlobalAvgPool():
                    parts.append("gap")
                case Dense():
                    parts.append(f"dense{layer.units}")
                case Dropout():
                    parts.append(f"dropout{layer.rate:g}")
        return " ".join(parts) + f" ({self.output_activation})"

    def forward_flops(self, batch: int) -> int:
        check_positive_int("batch", batch)
        return batch * sum(layer_flops(layer, shape) for layer, shape in zip(self.layers, self.shapes()))


RESNET_STEMS = ("imagenet", "cifar")
SAME_3X3 = ((1, 1), (1, 1))  # torchvision's padding=1: symmetric at stride 2 too, unlike 'same'


# The two residual blocks: torchvision's BasicBlock (ResNet-18/34) and Bottleneck (ResNet-50/101/152).
RESIDUAL_BLOCKS = ("basic", "bottleneck")
BOTTLENECK_EXPANSION = 4  # a Bottleneck's output has 4× its inner width (torchvision's Bottleneck.expansion)


@dataclass(frozen=True)
class ResidualBlock:
    """One residual block (He et al. 2016): its main path — each convolution ``conv_<x>`` followed by
    ``bn_<x>``, and by relu but for the last — plus the input, through shortcut_conv 1×1/stride →
    shortcut_bn when the shape changes, then relu. A BasicBlock's path is conv_a 3×3/stride → conv_b
    3×3; a Bottleneck's conv_a 1×1 to the inner ``width`` → conv_b 3×3/stride → conv_c 1×1 to 4× the
    width (the stride on the 3×3 conv, as torchvision's ResNet "v1.5"; the paper put it on conv_a)."""

    stage: int
    index: int
    in_channels: int
    width: int
    stride: int
    bottleneck: bool = False

    @property
    def name(self) -> str:
        return f"stage_{self.stage}/block_{self.index}"

    @property
    def out_channels(self) -> int:
        return self.width * BOTTLENECK_EXPANSION if self.bottleneck else self.width

    @property
    def has_shortcut_conv(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels

    @property
    def path(self) -> dict[str, Conv2D]:
        """The main path's convolutions by the letter that names them (``a`` → ``conv_a``, ``bn_a``)."""
        if self.bottleneck:
            return {
                "a": Conv2D(self.width, 1, 1, "valid", use_bias=False),
                "b": Conv2D(self.width, 3, self.stride, SAME_3X3, use_bias=False),
                "c": Conv2D(self.out_channels, 1, 1, "valid", use_bias=False),
            }
        return {
            "a": Conv2D(self.width, 3, self.stride, SAME_3X3, use_bias=False),
            "b": Conv2D(self.width, 3, 1, SAME_3X3, use_bias=False),
        }

    def path_inputs(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The input shape of each convolution of the main path, from the block's input ``shape``."""
        shapes = {}
        for letter, conv in self.path.items():
            shapes[letter] = shape
            shape = layer_output_shape(conv, shape)
        return shapes

    @property
    def shortcut_conv(self) -> Conv2D:
        return Conv2D(self.out_channels, 1, self.stride, "valid", use_bias=False)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return layer_output_shape(self.shortcut_conv, shape)

    def flops(self, shape: tuple[int, ...]) -> int:
        """Operations of the block on one example whose input has ``shape``."""
        inputs = self.path_inputs(shape)
        total = sum(layer_flops(conv, inputs[letter]) for letter, conv in self.path.items())
        return total + (layer_flops(self.shortcut_conv, shape) if self.has_shortcut_conv else 0)


@dataclass(frozen=True)
class ResNetSpec(ModelSpec):
    """A ResNet of BasicBlocks (ResNet-18: ``stage_blocks`` (2, 2, 2, 2), widths 64–512) or of
    Bottlenecks (``block`` "bottleneck"; ResNet-50: (3, 4, 6, 3), inner widths 64–512, outputs 4× as wide).

    ``stem``: ``imagenet`` is conv 7×7/2 (padding 3) → BN → relu → max-pool 3×3/2 (padding 1), as
    torchvision's ``resnet18`` (and the classic CIFAR-10 fine-tuning example that uses it unchanged);
    ``cifar`` is conv 3×3/1 (padding 1) → BN → relu, the stem of ResNets trained on 32×32 images.
    Stage 0 keeps the resolution, each later stage halves it in its first block. Convolutions have no
    bias (BatchNorm follows each); the head is global average pooling → Dense(num_classes).
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    stem: str
    stage_blocks: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    batchnorm: BatchNorm = field(default_factory=BatchNorm)
    output_activation: str = "softmax"
    block: str = "basic"
    kernel_initializer: str = field(default="he_normal", kw_only=True)

    kind: ClassVar[str] = "resnet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _check_image_shape(self.input_shape))
        check_positive_int("num_classes", self.num_classes)
        if self.stem not in RESNET_STEMS:
            raise SpecError("stem", self.stem, RESNET_STEMS)
        if self.block not in RESIDUAL_BLOCKS:
            raise SpecError("block", self.block, RESIDUAL_BLOCKS)
        for field_name in ("stage_blocks", "widths"):
            value = check_sequence(
                field_name, getattr(self, field_name), "a sequence of positive integers, one per stage"
            )
            object.__setattr__(self, field_name, value)
            for i, n in enumerate(getattr(self, field_name)):
                check_positive_int(f"{field_name}[{i}]", n)
        if len(self.stage_blocks) != len(self.widths) or not self.widths:
            raise SpecError("widths", self.widths, f"one width per stage ({len(self.stage_blocks)})")
        if not isinstance(self.batchnorm, BatchNorm):
            raise SpecError("batchnorm", self.batchnorm, "a spec.layers.BatchNorm")
        self.shapes()
        super().__post_init__()

    @property
    def stem_layers(self) -> tuple[Conv2D, BatchNorm, Act] | tuple[Conv2D, BatchNorm, Act, Pool2D]:
        """The stem as layer specs: its conv is canonical ``stem/conv``, its BatchNorm ``stem/bn``."""
        if self.stem == "imagenet":
            conv = Conv2D(self.widths[0], 7, 2, ((3, 3), (3, 3)), use_bias=False)
            pool = Pool2D("max", 3, 2, ((1, 1), (1, 1)))
            return (conv, self.batchnorm, Act("relu"), pool)
        return (Conv2D(self.widths[0], 3, 1, SAME_3X3, use_bias=False), self.batchnorm, Act("relu"))

    def blocks(self) -> list[ResidualBlock]:
        """Every residual block, in order."""
        blocks, channels = [], self.widths[0]
        for stage, (count, width) in enumerate(zip(self.stage_blocks, self.widths)):
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                block = ResidualBlock(stage, index, channels, width, stride, self.block == "bottleneck")
                blocks.append(block)
                channels = block.out_channels
        return blocks

    def named_layers(self) -> dict[str, Layer]:
        """Each layer with tensors by its canonical name, in the order the pass computes them."""
        conv, bn = self.stem_layers[:2]
        named: dict[str, Layer] = {"stem/conv": conv, "stem/bn": bn}
        for block in self.blocks():
            for letter, path_conv in block.path.items():
                named |= {f"{block.name}/conv_{letter}": path_conv, f"{block.name}/bn_{letter}": self.batchnorm}
            if block.has_shortcut_conv:
                named[f"{block.name}/shortcut_conv"] = block.shortcut_conv
                named[f"{block.name}/shortcut_bn"] = self.batchnorm
        return named | {"head": Dense(self.num_classes)}

    @property
    def head_features(self) -> int:
        """The channels the head reads, those of the last block."""
        return self.widths[-1] * (BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The input shape of the stem, of each block (by name) and of the head."""
        shape: tuple[int, ...] = self.input_shape
        shapes = {"stem": shape}
        try:
            for layer in self.stem_layers:
                shape = layer_output_shape(layer, shape)
            for block in self.blocks():
                shapes[block.name] = shape
                shape = block.output_shape(shape)
        except SpecError as exc:
            raise SpecError(f"input_shape of {self.name}", self.input_shape, f"an image large enough: {exc}") from None
        shapes["head"] = shape
        return shapes

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.num_classes,)

    @property
    def output_size(self) -> int:
        return self.num_classes

    @property
    def is_deep(self) -> bool:
        """More than two blocks: a dozen or more training-mode BatchNorms and ~10⁵ ReLUs, enough that
        float32 rounding amplifies through the normalisations and decides the side of some ReLU
        kinks, so elementwise float32 gradients are ill-posed (measured: :data:`spec.cases.DEEP_GRADIENTS`)."""
        return sum(self.stage_blocks) > 2

    def describe(self) -> str:
        depth = len(next(iter(self.blocks())).path) * sum(self.stage_blocks) + 2
        return (
            f"ResNet-{depth} ({self.stem} stem, widths {'-'.join(map(str, self.widths))}, "
            f"{'×'.join(map(str, self.input_shape))} → {self.num_classes}, {self.output_activation})"
        )

    def forward_flops(self, batch: int) -> int:
        check_positive_int("batch", batch)
        shapes = self.shapes()
        total, shape = 0, tuple(self.input_shape)
        for layer in self.stem_layers:
            total += layer_flops(layer, shape)
            shape = layer_output_shape(layer, shape)
        total += sum(block.flops(shapes[block.name]) for block in self.blocks())
        return batch * (total + layer_flops(Dense(self.num_classes), (self.head_features,)))
