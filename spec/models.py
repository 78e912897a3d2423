"""Framework-neutral model specs and the zoo of named classic models.

A spec holds every choice that the frameworks default differently, so that no backend ever relies on
a framework default. Specs are frozen dataclasses validated on construction: a bad field raises
:class:`SpecError` naming the field and the allowed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spec.errors import SpecError
from spec.layers import (
    BIAS_INITIALIZERS,
    EMBEDDING_INITIALIZERS,
    KERNEL_INITIALIZERS,
    LAYER_TYPES,
    OUTPUT_ACTIVATIONS,
    RECURRENT_INITIALIZERS,
    Act,
    Activation,
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
    output_size,
    resolve_padding,
)
from spec.validation import check_number, check_positive_int


@dataclass(frozen=True)
class MLPSpec:
    """A multi-layer perceptron: Dense layers with one activation each, then an output Dense layer.

    The model computes logits (the output layer before ``output_activation``); ``output_activation``
    turns them into the model's outputs. Losses are computed from the logits, as every framework's
    numerically stable loss does.
    """

    name: str
    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int
    activations: tuple[Activation, ...]
    output_activation: str
    use_bias: bool = True
    kernel_initializer: str = "glorot_uniform"
    bias_initializer: str = "zeros"
    dropout: float = 0.0
    kernel_l2: float = 0.0
    # Transfer learning: canonical layers (or layer prefixes such as "stage_0") left out of training,
    # and whether BatchNorm layers among them run in inference mode in training (see FROZEN_BATCHNORM).
    frozen: tuple[str, ...] = ()
    frozen_batchnorm: str = "inference"
    kind: str = field(default="mlp", init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        check_positive_int("input_size", self.input_size)
        check_positive_int("output_size", self.output_size)
        if isinstance(self.hidden_sizes, (str, bytes)) or not hasattr(self.hidden_sizes, "__iter__"):
            raise SpecError("hidden_sizes", self.hidden_sizes, "a sequence of positive integers")
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for i, size in enumerate(self.hidden_sizes):
            check_positive_int(f"hidden_sizes[{i}]", size)
        activations = self.activations
        if isinstance(activations, (str, Activation)):  # one activation shared by every hidden layer
            activations = (activations,) * len(self.hidden_sizes)
        activations = tuple(Activation.parse(a) for a in activations)
        if len(activations) != len(self.hidden_sizes):
            raise SpecError("activations", activations, f"one per hidden layer ({len(self.hidden_sizes)})")
        object.__setattr__(self, "activations", activations)
        if not isinstance(self.use_bias, bool):
            raise SpecError("use_bias", self.use_bias, (True, False))
        _check_head_and_training_fields(self)
        check_number("dropout", self.dropout, low=0.0, high=1.0)

    @property
    def has_dropout(self) -> bool:
        return self.dropout > 0

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. (784, 512, 10)."""
        return (self.input_size, *self.hidden_sizes, self.output_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example (without the batch axis)."""
        return (self.input_size,)

    def describe(self) -> str:
        """One line a person can read, e.g. ``784-512(relu)-10(softmax)``."""
        hidden = "-".join(f"{n}({a})" for n, a in zip(self.hidden_sizes, self.activations))
        extras = "".join(
            f", {label} {value:g}" for label, value in (("dropout", self.dropout), ("L2", self.kernel_l2)) if value
        )
        return "-".join(p for p in (str(self.input_size), hidden) if p) + (
            f"-{self.output_size}({self.output_activation}){extras}"
        )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError("name", name, "a Python identifier such as 'mnist_mlp'")


# How a BatchNorm layer in a frozen part of the model behaves in training mode:
#   "inference"  normalise with its running statistics and leave them alone (Keras: a layer with
#                trainable=False runs in inference mode; the usual fine-tuning setup)
#   "training"   normalise with batch statistics and keep updating the running ones (torch: setting
#                requires_grad=False freezes γ and β only)
FROZEN_BATCHNORM = ("inference", "training")


def _check_head_and_training_fields(spec: object) -> None:
    """The fields every model spec shares: output activation, initializers, L2 factor, freezing."""
    if spec.output_activation not in OUTPUT_ACTIVATIONS:
        raise SpecError("output_activation", spec.output_activation, OUTPUT_ACTIVATIONS)
    _check_initializers(spec)
    check_number("kernel_l2", spec.kernel_l2, low=0.0)
    if isinstance(spec.frozen, str) or not all(isinstance(f, str) for f in spec.frozen):
        raise SpecError("frozen", spec.frozen, "a tuple of canonical layer names or prefixes")
    object.__setattr__(spec, "frozen", tuple(spec.frozen))
    if spec.frozen_batchnorm not in FROZEN_BATCHNORM:
        raise SpecError("frozen_batchnorm", spec.frozen_batchnorm, FROZEN_BATCHNORM)
    from spec.params import layer_names  # here: spec.params builds on this module

    layers = layer_names(spec)
    for entry in spec.frozen:
        if not any(is_within(layer, entry) for layer in layers):
            raise SpecError("frozen", entry, f"a canonical layer name or prefix of {spec.name}: {layers}")


def is_within(layer: str, entry: str) -> bool:
    """Whether canonical ``layer`` is ``entry`` or lies under it (``stage_0`` holds ``stage_0/block_1/conv_a``)."""
    return layer == entry or layer.startswith(entry + "/")


def is_frozen(spec: ModelSpec, layer: str) -> bool:
    """Whether the spec leaves canonical ``layer`` out of training."""
    return any(is_within(layer, entry) for entry in spec.frozen)


def _check_initializers(spec: object) -> None:
    if spec.kernel_initializer not in KERNEL_INITIALIZERS:
        raise SpecError("kernel_initializer", spec.kernel_initializer, KERNEL_INITIALIZERS)
    if spec.bias_initializer not in BIAS_INITIALIZERS:
        raise SpecError("bias_initializer", spec.bias_initializer, BIAS_INITIALIZERS)


def _check_image_shape(shape: object) -> tuple[int, int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise SpecError("input_shape", shape, "(height, width, channels), NHWC without the batch axis")
    for i, n in enumerate(shape):
        check_positive_int(f"input_shape[{i}]", n)
    return tuple(shape)  # type: ignore[return-value]


def _check_cnn_input_shape(shape: object) -> tuple[int, ...]:
    """An image (height, width, channels), or a vector (size,) for a network that starts with Dense
    layers and reshapes them into an image (a generator)."""
    if isinstance(shape, (tuple, list)) and len(shape) == 1:
        check_positive_int("input_shape[0]", shape[0])
        return (int(shape[0]),)
    return _check_image_shape(shape)


def layer_output_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape (without the batch axis) ``layer`` makes of an input of ``shape``."""
    image = len(shape) == 3
    match layer:
        case Conv2D() | ConvTranspose2D() | Pool2D() if not image:
            raise SpecError("layers", type(layer).__name__, "image layers only on images, not after Flatten")
        case Conv2D():
            window, strides = layer.kernel_size, layer.strides
            pads = resolve_padding(layer.padding, shape[:2], window, strides)
            return (*output_size(shape[:2], window, strides, pads), layer.filters)
        case ConvTranspose2D():
            return (*layer.output_size(shape[:2]), layer.filters)
        case Pool2D():
            window, strides = layer.pool_size, layer.strides
            pads = resolve_padding(layer.padding, shape[:2], window, strides)
            if layer.kind == "max" and any(p >= k for pair, k in zip(pads, window) for p in pair):
                raise SpecError("pool.padding", pads, f"fewer pixels per side than the window {window}")
            return (*output_size(shape[:2], window, strides, pads), shape[2])
        case Flatten() | GlobalAvgPool() if not image:
            raise SpecError("layers", type(layer).__name__, "Flatten or GlobalAvgPool only on images")
        case Flatten():
            return (shape[0] * shape[1] * shape[2],)
        case GlobalAvgPool():
            return (shape[2],)
        case Reshape() if image:
            raise SpecError("layers", "Reshape", "Reshape only on vectors (after Dense layers)")
        case Reshape():
            target = layer.target_shape
            if target[0] * target[1] * target[2] != shape[0]:
                raise SpecError("reshape.target_shape", target, f"{shape[0]} values, the size of its input")
            return target
        case Dense() if image:
            raise SpecError("layers", "Dense", "Dense layers only on vectors (after Flatten or GlobalAvgPool)")
        case Dense():
            return (layer.units,)
    return shape  # BatchNorm, Act, Dropout keep the shape


@dataclass(frozen=True)
class CNNSpec:
    """A sequential convolutional network on NHWC images: image layers (Conv2D, ConvTranspose2D,
    Pool2D, BatchNorm, Act, Dropout) and vector layers (Dense, with Act, BatchNorm, Dropout), joined
    by Flatten or GlobalAvgPool (image → vector) and Reshape (vector → image). Its input is an image,
    or a vector (a generator's latent code). The last layer gives the logits, which
    ``output_activation`` turns into outputs: a Dense layer (a classifier's scores), or a Conv2D or
    ConvTranspose2D (an image, e.g. an autoencoder's reconstruction, sigmoid per pixel)."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    output_activation: str
    kernel_initializer: str = "glorot_uniform"
    bias_initializer: str = "zeros"
    kernel_l2: float = 0.0
    # Transfer learning: canonical layers (or layer prefixes such as "stage_0") left out of training,
    # and whether BatchNorm layers among them run in inference mode in training (see FROZEN_BATCHNORM).
    frozen: tuple[str, ...] = ()
    frozen_batchnorm: str = "inference"
    kind: str = field(default="cnn", init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "input_shape", _check_cnn_input_shape(self.input_shape))
        if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
            raise SpecError("layers", self.layers, "a sequence of layer specs from spec.layers")
        object.__setattr__(self, "layers", tuple(self.layers))
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
        _check_head_and_training_fields(self)

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

    def describe(self) -> str:
        """One line a person can read, e.g. ``28×28×1 conv32/3 relu maxpool2 … dense10 (softmax)``."""
        parts = ["×".join(map(str, self.input_shape))]
        for layer in self.layers:
            match layer:
                case Conv2D() | ConvTranspose2D():
                    kind = "conv" if isinstance(layer, Conv2D) else "deconv"
                    stride = f"/s{layer.strides[0]}" if layer.strides != (1, 1) else ""
                    pad = (
                        ""
                        if layer.padding == "valid"
                        else f" {layer.padding}"
                        if isinstance(layer.padding, str)
                        else " pad"
                    )
                    parts.append(f"{kind}{layer.filters}/{layer.kernel_size[0]}{stride}{pad}")
                case Pool2D():
                    parts.append(f"{layer.kind}pool{layer.pool_size[0]}")
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


def reconstructs_input(spec: object) -> bool:
    """Whether ``spec``'s output has its input's shape (an autoencoder's reconstruction)."""
    output = (spec.output_size,) if isinstance(spec, MLPSpec) else getattr(spec, "output_shape", None)
    return output == tuple(spec.input_shape)


RESNET_STEMS = ("imagenet", "cifar")
SAME_3X3 = ((1, 1), (1, 1))  # torchvision's padding=1: symmetric at stride 2 too, unlike 'same'


@dataclass(frozen=True)
class ResidualBlock:
    """One BasicBlock (He et al. 2016): conv_a 3×3/stride → bn_a → relu → conv_b 3×3 → bn_b, plus the
    input — through shortcut_conv 1×1/stride → shortcut_bn when the shape changes — then relu."""

    stage: int
    index: int
    in_channels: int
    out_channels: int
    stride: int

    @property
    def name(self) -> str:
        return f"stage_{self.stage}/block_{self.index}"

    @property
    def has_shortcut_conv(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels

    @property
    def conv_a(self) -> Conv2D:
        return Conv2D(self.out_channels, 3, self.stride, SAME_3X3, use_bias=False)

    @property
    def conv_b(self) -> Conv2D:
        return Conv2D(self.out_channels, 3, 1, SAME_3X3, use_bias=False)

    @property
    def shortcut_conv(self) -> Conv2D:
        return Conv2D(self.out_channels, 1, self.stride, "valid", use_bias=False)


@dataclass(frozen=True)
class ResNetSpec:
    """A ResNet of BasicBlocks (ResNet-18: ``stage_blocks`` (2, 2, 2, 2), widths 64–512).

    ``stem``: ``imagenet`` is conv 7×7/2 (padding 3) → BN → relu → max-pool 3×3/2 (padding 1), as
    torchvision's ``resnet18`` (and the classic CIFAR-10 fine-tuning example that uses it unchanged);
    ``cifar`` is conv 3×3/1 (padding 1) → BN → relu, the stem of ResNets trained on 32×32 images.
    Stage 0 keeps the resolution, each later stage halves it in its first block. Convolutions have no
    bias (BatchNorm follows each); the head is global average pooling → Dense(num_classes).
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    stem: str
    stage_blocks: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    batchnorm: BatchNorm = field(default_factory=BatchNorm)
    output_activation: str = "softmax"
    kernel_initializer: str = "he_normal"
    bias_initializer: str = "zeros"
    kernel_l2: float = 0.0
    # Transfer learning: canonical layers (or layer prefixes such as "stage_0") left out of training,
    # and whether BatchNorm layers among them run in inference mode in training (see FROZEN_BATCHNORM).
    frozen: tuple[str, ...] = ()
    frozen_batchnorm: str = "inference"
    kind: str = field(default="resnet", init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "input_shape", _check_image_shape(self.input_shape))
        check_positive_int("num_classes", self.num_classes)
        if self.stem not in RESNET_STEMS:
            raise SpecError("stem", self.stem, RESNET_STEMS)
        for field_name in ("stage_blocks", "widths"):
            value = getattr(self, field_name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise SpecError(field_name, value, "a sequence of positive integers, one per stage")
            object.__setattr__(self, field_name, tuple(value))
            for i, n in enumerate(getattr(self, field_name)):
                check_positive_int(f"{field_name}[{i}]", n)
        if len(self.stage_blocks) != len(self.widths) or not self.widths:
            raise SpecError("widths", self.widths, f"one width per stage ({len(self.stage_blocks)})")
        if not isinstance(self.batchnorm, BatchNorm):
            raise SpecError("batchnorm", self.batchnorm, "a spec.layers.BatchNorm")
        _check_head_and_training_fields(self)
        self.shapes()

    @property
    def stem_layers(self) -> tuple[Layer, ...]:
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
                blocks.append(ResidualBlock(stage, index, channels, width, stride))
                channels = width
        return blocks

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The input shape of the stem, of each block (by name) and of the head."""
        shape: tuple[int, ...] = self.input_shape
        shapes = {"stem": shape}
        try:
            for layer in self.stem_layers:
                shape = layer_output_shape(layer, shape)
            for block in self.blocks():
                shapes[block.name] = shape
                shape = layer_output_shape(block.conv_a, shape)
        except SpecError as exc:
            raise SpecError(f"input_shape of {self.name}", self.input_shape, f"an image large enough: {exc}") from None
        shapes["head"] = shape
        return shapes

    @property
    def output_size(self) -> int:
        return self.num_classes

    @property
    def is_deep(self) -> bool:
        """More than two blocks: a dozen or more training-mode BatchNorms and ~10⁵ ReLUs, enough that
        float32 rounding amplifies through the normalisations and decides the side of some ReLU
        kinks, so elementwise gradient checks are ill-posed (measured in tests/test_vision.py)."""
        return sum(self.stage_blocks) > 2

    @property
    def has_dropout(self) -> bool:
        return False

    def describe(self) -> str:
        depth = 2 * sum(self.stage_blocks) + 2
        return (
            f"ResNet-{depth} ({self.stem} stem, widths {'-'.join(map(str, self.widths))}, "
            f"{'×'.join(map(str, self.input_shape))} → {self.num_classes}, {self.output_activation})"
        )


# Recurrent cells and their gates, in the canonical order in which kernels and biases concatenate
# them (torch's and Flax's order; Keras orders the GRU's z, r, h and its backend reorders):
#   simple_rnn  h' = tanh(x·W + b + h·U)
#   lstm        i, f, g, o = split(x·W + b + h·U);  c' = σ(f)·c + σ(i)·tanh(g);  h' = σ(o)·tanh(c')
#   gru         r, z = σ(x·W_rz + b_rz + h·U_rz [+ b'_rz]);  h' = (1 − z)·n + z·h, where
#                 reset "after":  n = tanh(x·W_n + b_n + r·(h·U_n + b'_n))   (torch; Keras reset_after=True)
#                 reset "before": n = tanh(x·W_n + b_n + (r·h)·U_n)          (Keras reset_after=False)
# b' is the recurrent bias, which only the reset-"after" GRU has (see spec.params).
RNN_CELLS = ("simple_rnn", "lstm", "gru")
GATES = {"simple_rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
GRU_RESET = ("after", "before")
# What the head reads: "last" — the final hidden state of each direction of the top layer (the
# forward one after step T−1, the backward one after step 0), concatenated; "sequence" — every time
# step's output (one Dense applied per step).
SEQUENCE_HEADS = ("last", "sequence")


@dataclass(frozen=True)
class RNNSpec:
    """Stacked recurrent layers (batch-first sequences ``(batch, seq_len, input_size)``) and a Dense head.

    Each layer after the first reads the previous one's outputs (both directions concatenated when
    ``bidirectional``). No dropout between layers. ``cell`` and ``gru_reset`` are defined at
    :data:`RNN_CELLS`; ``head`` at :data:`SEQUENCE_HEADS`.
    """

    name: str
    cell: str
    input_size: int
    hidden_size: int
    seq_len: int
    output_size: int
    output_activation: str
    num_layers: int = 1
    bidirectional: bool = False
    head: str = "last"
    gru_reset: str = "after"
    kernel_initializer: str = "glorot_uniform"
    recurrent_initializer: str = "orthogonal"
    bias_initializer: str = "zeros"
    kernel_l2: float = 0.0
    frozen: tuple[str, ...] = ()
    frozen_batchnorm: str = "inference"
    kind: str = field(default="rnn", init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.cell not in RNN_CELLS:
            raise SpecError("cell", self.cell, RNN_CELLS)
        for field_name in ("input_size", "hidden_size", "seq_len", "output_size", "num_layers"):
            check_positive_int(field_name, getattr(self, field_name))
        if not isinstance(self.bidirectional, bool):
            raise SpecError("bidirectional", self.bidirectional, (True, False))
        if self.head not in SEQUENCE_HEADS:
            raise SpecError("head", self.head, SEQUENCE_HEADS)
        if self.head == "sequence" and self.output_activation == "softmax":
            raise SpecError("output_activation", "softmax", "sigmoid or linear with a per-step head")
        if self.gru_reset not in GRU_RESET:
            raise SpecError("gru_reset", self.gru_reset, GRU_RESET)
        if self.recurrent_initializer not in RECURRENT_INITIALIZERS:
            raise SpecError("recurrent_initializer", self.recurrent_initializer, RECURRENT_INITIALIZERS)
        if self.kernel_l2:  # a recurrent kernel's penalty differs per framework; not pinned yet
            raise SpecError("kernel_l2", self.kernel_l2, "0 for recurrent models")
        if self.frozen:
            raise SpecError("frozen", self.frozen, "() for recurrent models")
        _check_head_and_training_fields(self)

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[self.cell]

    @property
    def directions(self) -> tuple[str, ...]:
        return ("forward", "backward") if self.bidirectional else ("forward",)

    @property
    def has_recurrent_bias(self) -> bool:
        """Whether each layer has a second bias inside the recurrent term (the reset-"after" GRU)."""
        return self.cell == "gru" and self.gru_reset == "after"

    @property
    def features(self) -> int:
        """Width of each layer's output: the hidden size times the number of directions."""
        return self.hidden_size * len(self.directions)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.seq_len, self.input_size)

    @property
    def has_dropout(self) -> bool:
        return False

    def describe(self) -> str:
        cell = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": f"GRU (reset {self.gru_reset})"}[self.cell]
        stack = f"{self.num_layers}×" if self.num_layers > 1 else ""
        bi = "bidirectional " if self.bidirectional else ""
        return (
            f"{self.seq_len}×{self.input_size} {bi}{stack}{cell}({self.hidden_size}) → {self.head} → "
            f"dense{self.output_size} ({self.output_activation})"
        )


# Transformer encoder choices:
#   positional   "sinusoidal" — the fixed table of Vaswani et al. (2017), sin at even and cos at odd
#                features, interleaved: PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(…);
#                "learned" — a trained (seq_len, d_model) table
#   norm         "post" — x = LN(x + sublayer(x)) (the original; torch's default norm_first=False);
#                "pre"  — x = x + sublayer(LN(x)), with one more LayerNorm after the last layer
#   pooling      what the head reads: "mean" of the non-padding positions, the "first" position (a
#                [CLS]-style token), or "none" — every position (one Dense per position)
POSITIONAL_ENCODINGS = ("sinusoidal", "learned")
NORM_PLACEMENTS = ("post", "pre")
POOLINGS = ("mean", "first", "none")
FFN_ACTIVATIONS = ("relu", "gelu")


@dataclass(frozen=True)
class TransformerSpec:
    """A Transformer encoder on token ids ``(batch, seq_len)``: token embedding (times √d_model when
    ``scale_embedding``), positions, ``num_layers`` encoder layers — multi-head self-attention and a
    position-wise FFN (Dense ``ff_size`` → activation → Dense ``d_model``), each with a residual and
    a LayerNorm — then pooling and a Dense head. No dropout.

    Attention: per head, softmax(q·kᵀ / √head_dim) · v, where head_dim = d_model / num_heads; the
    heads' outputs concatenate (head-major) into the output projection. The padding mask hides the
    keys whose token is ``pad_token`` (``None``: no mask): every position, padding included, attends
    to the non-padding positions only. A sequence must hold at least one non-padding token.
    LayerNorm normalises each position over its features with the biased variance and
    ``layer_norm_epsilon`` inside the square root (defaults: torch 1e-5, Keras 1e-3, Flax 1e-6).
    """

    name: str
    vocab_size: int
    seq_len: int
    d_model: int
    num_heads: int
    ff_size: int
    num_layers: int
    output_size: int
    output_activation: str
    activation: Activation | str = "relu"
    positional: str = "sinusoidal"
    norm: str = "post"
    layer_norm_epsilon: float = 1e-5
    pad_token: int | None = 0
    pooling: str = "mean"
    scale_embedding: bool = True
    kernel_initializer: str = "glorot_uniform"
    bias_initializer: str = "zeros"
    embedding_initializer: str = "normal"
    kernel_l2: float = 0.0
    frozen: tuple[str, ...] = ()
    frozen_batchnorm: str = "inference"
    kind: str = field(default="transformer", init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        for field_name in ("vocab_size", "seq_len", "d_model", "num_heads", "ff_size", "num_layers", "output_size"):
            check_positive_int(field_name, getattr(self, field_name))
        if self.d_model % self.num_heads:
            raise SpecError("num_heads", self.num_heads, f"a divisor of d_model ({self.d_model})")
        object.__setattr__(self, "activation", Activation.parse(self.activation))
        if self.activation.kind not in FFN_ACTIVATIONS:
            raise SpecError("activation", self.activation, FFN_ACTIVATIONS)
        if self.positional not in POSITIONAL_ENCODINGS:
            raise SpecError("positional", self.positional, POSITIONAL_ENCODINGS)
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise SpecError("d_model", self.d_model, "an even number for sinusoidal positions")
        if self.norm not in NORM_PLACEMENTS:
            raise SpecError("norm", self.norm, NORM_PLACEMENTS)
        check_number("layer_norm_epsilon", self.layer_norm_epsilon, low=0.0, low_open=True)
        if self.pad_token is not None and (
            isinstance(self.pad_token, bool) or not isinstance(self.pad_token, int) or
            not 0 <= self.pad_token < self.vocab_size
        ):  # fmt: skip
            raise SpecError("pad_token", self.pad_token, f"None or a token id in [0, {self.vocab_size})")
        if self.pooling not in POOLINGS:
            raise SpecError("pooling", self.pooling, POOLINGS)
        if self.pooling == "none" and self.output_activation == "softmax":
            raise SpecError("output_activation", "softmax", "sigmoid or linear with a per-position head")
        if not isinstance(self.scale_embedding, bool):
            raise SpecError("scale_embedding", self.scale_embedding, (True, False))
        if self.embedding_initializer not in EMBEDDING_INITIALIZERS:
            raise SpecError("embedding_initializer", self.embedding_initializer, EMBEDDING_INITIALIZERS)
        if self.kernel_l2:  # which tensors an L2 term covers (embeddings? attention?) is not pinned yet
            raise SpecError("kernel_l2", self.kernel_l2, "0 for Transformer models")
        if self.frozen:
            raise SpecError("frozen", self.frozen, "() for Transformer models")
        _check_head_and_training_fields(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def input_shape(self) -> tuple[int]:
        return (self.seq_len,)

    @property
    def has_dropout(self) -> bool:
        return False

    def describe(self) -> str:
        positions = "sinusoidal" if self.positional == "sinusoidal" else "learned"
        return (
            f"{self.seq_len} tokens of {self.vocab_size}, {positions} positions, {self.num_layers}× "
            f"{self.norm}-norm encoder (d {self.d_model}, {self.num_heads} heads, FFN {self.ff_size} "
            f"{self.activation}, LN ε {self.layer_norm_epsilon:g}) → {self.pooling} → "
            f"dense{self.output_size} ({self.output_activation})"
        )


# How a VAE scores its reconstruction (summed over the pixels of each example, see spec.losses).
RECONSTRUCTIONS = ("binary_crossentropy", "mse")


@dataclass(frozen=True)
class VAESpec:
    """A variational autoencoder (Kingma & Welling) on flattened images in [0, 1].

    Encoder: Dense ``hidden_size`` (``activation``) → Dense 2·``latent_size``, whose outputs are the
    mean (first ``latent_size`` columns) and the log-variance (the rest) of q(z|x). The sample is
    z = mean + exp(½·log_variance)·ε. Decoder: Dense ``hidden_size`` (``activation``) → Dense
    ``input_size`` with a sigmoid. ε is an input, not drawn inside the model, so that every backend
    and the judge see the same noise: the model's input is each image with its ε beside it,
    shape (batch, input_size + latent_size) (:func:`spec.data.vae_inputs`). Its logits are the
    decoder's, before the sigmoid. Its loss is the negative ELBO, ``negative_elbo`` in
    :mod:`spec.losses`: ``reconstruction`` summed over the pixels plus ``kl_weight`` times the KL
    divergence from N(0, I), averaged over the batch.
    """

    name: str
    input_size: int = 784
    hidden_size: int = 256
    latent_size: int = 10
    activation: Activation | str = "relu"
    reconstruction: str = "binary_crossentropy"
    kl_weight: float = 1.0
    kernel_initializer: str = "glorot_uniform"
    bias_initializer: str = "zeros"
    output_activation: str = field(default="sigmoid", init=False)
    kernel_l2: float = field(default=0.0, init=False)
    frozen: tuple[str, ...] = field(default=(), init=False)
    frozen_batchnorm: str = field(default="inference", init=False)
    kind: str = field(default="vae", init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        for field_name in ("input_size", "hidden_size", "latent_size"):
            check_positive_int(field_name, getattr(self, field_name))
        object.__setattr__(self, "activation", Activation.parse(self.activation))
        if self.reconstruction not in RECONSTRUCTIONS:
            raise SpecError("reconstruction", self.reconstruction, RECONSTRUCTIONS)
        check_number("kl_weight", self.kl_weight, low=0.0)
        _check_initializers(self)

    @property
    def encoder(self) -> MLPSpec:
        """The encoder as an MLP: its logits are [mean | log_variance]."""
        return MLPSpec(
            f"{self.name}_encoder", self.input_size, (self.hidden_size,), 2 * self.latent_size,
            self.activation, "linear", kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
        )  # fmt: skip

    @property
    def decoder(self) -> MLPSpec:
        """The decoder as an MLP: from a latent sample to the image's logits."""
        return MLPSpec(
            f"{self.name}_decoder", self.latent_size, (self.hidden_size,), self.input_size,
            self.activation, "sigmoid", kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
        )  # fmt: skip

    @property
    def input_shape(self) -> tuple[int]:
        """One image and its noise ε, side by side."""
        return (self.input_size + self.latent_size,)

    @property
    def output_size(self) -> int:
        return self.input_size

    @property
    def has_dropout(self) -> bool:
        return False

    def describe(self) -> str:
        kl = "" if self.kl_weight == 1 else f" × {self.kl_weight:g}"
        return (
            f"{self.input_size}-{self.hidden_size}({self.activation})-{self.latent_size}×2 (mean, log-variance) "
            f"~ z → {self.hidden_size}({self.activation})-{self.input_size}(sigmoid); "
            f"{self.reconstruction} + KL{kl}"
        )


# What a GAN's generator may end in: unbounded samples (a 2-D mixture) or pixels in [0, 1].
GENERATOR_OUTPUTS = ("linear", "sigmoid")


class _GANModel:
    """What a GAN spec of either kind derives alike from its two networks, its ``latent_size``,
    ``data_shape`` and ``generator_output``: the model's input is the latent code, its output a sample."""

    @property
    def output_activation(self) -> str:
        return self.generator_output

    @property
    def input_shape(self) -> tuple[int]:
        return (self.latent_size,)

    @property
    def output_size(self) -> int:
        return math.prod(self.data_shape)

    @property
    def has_dropout(self) -> bool:
        return False

    def describe(self) -> str:
        return f"G {self.generator.describe()}; D {self.discriminator.describe()}"


@dataclass(frozen=True)
class GANSpec(_GANModel):
    """A generative adversarial network (Goodfellow et al. 2014) of two MLPs.

    Generator: ``latent_size`` → ``generator_hidden`` (``activation``) → ``data_size`` with
    ``generator_output``. Discriminator: ``data_size`` → ``discriminator_hidden``
    (``discriminator_activation``) → one logit, the log-odds that its input is real. The model's
    input is the latent noise z (drawn by the data side, so every backend sees the same), its
    logits the generator's before ``generator_output``, its outputs the samples. It trains with two
    losses (:mod:`spec.losses`), each updating one network: ``gan_discriminator`` and the
    non-saturating ``gan_generator``; a recipe alternates them (:func:`spec.training.fit`).
    """

    name: str
    latent_size: int
    data_size: int
    generator_hidden: tuple[int, ...]
    discriminator_hidden: tuple[int, ...]
    activation: Activation | str = "relu"
    discriminator_activation: Activation | str = "leaky_relu(0.2)"
    generator_output: str = "linear"
    kernel_initializer: str = "glorot_uniform"
    bias_initializer: str = "zeros"
    kernel_l2: float = field(default=0.0, init=False)
    frozen: tuple[str, ...] = field(default=(), init=False)
    frozen_batchnorm: str = field(default="inference", init=False)
    kind: str = field(default="gan", init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        check_positive_int("latent_size", self.latent_size)
        check_positive_int("data_size", self.data_size)
        if self.generator_output not in GENERATOR_OUTPUTS:
            raise SpecError("generator_output", self.generator_output, GENERATOR_OUTPUTS)
        _check_initializers(self)
        # the parts validate their own fields (hidden sizes, activations)
        object.__setattr__(self, "activation", Activation.parse(self.activation))
        object.__setattr__(self, "discriminator_activation", Activation.parse(self.discriminator_activation))
        object.__setattr__(self, "generator_hidden", self.generator.hidden_sizes)
        object.__setattr__(self, "discriminator_hidden", self.discriminator.hidden_sizes)

    @property
    def generator(self) -> MLPSpec:
        return MLPSpec(
            f"{self.name}_generator", self.latent_size, self.generator_hidden, self.data_size, self.activation,
            self.generator_output, kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
        )  # fmt: skip

    @property
    def discriminator(self) -> MLPSpec:
        return MLPSpec(
            f"{self.name}_discriminator", self.data_size, self.discriminator_hidden, 1,
            self.discriminator_activation, "sigmoid", kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
        )  # fmt: skip

    @property
    def data_shape(self) -> tuple[int]:
        return (self.data_size,)


@dataclass(frozen=True)
class ConvGANSpec(_GANModel):
    """A DCGAN-style GAN (Radford et al. 2016) whose two networks are sequential CNNs: a generator
    from the latent vector (Dense → Reshape → transposed convs) to an image, and a discriminator
    from an image (strided convs → Flatten → Dense) to one logit. Inputs, losses and training are
    those of :class:`GANSpec`. Without BatchNorm or Dropout (DCGAN has BatchNorm): whose batch
    statistics — real and generated batches apart or together, the generator's step updating the
    discriminator's running ones or not — is a convention of its own, not pinned here yet."""

    name: str
    generator: CNNSpec
    discriminator: CNNSpec
    kernel_l2: float = field(default=0.0, init=False)
    frozen: tuple[str, ...] = field(default=(), init=False)
    frozen_batchnorm: str = field(default="inference", init=False)
    kind: str = field(default="gan", init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        for part in ("generator", "discriminator"):
            network = getattr(self, part)
            if not isinstance(network, CNNSpec):
                raise SpecError(part, network, "a CNNSpec")
            if network.kernel_l2 or network.frozen:
                raise SpecError(f"{part}.kernel_l2/frozen", (network.kernel_l2, network.frozen), "0 and ()")
            held = [type(layer).__name__ for layer in network.layers if isinstance(layer, (BatchNorm, Dropout))]
            if held:
                raise SpecError(f"{part}.layers", held[0], "layers without batch statistics or noise")
        if len(self.generator.input_shape) != 1:
            raise SpecError("generator.input_shape", self.generator.input_shape, "a latent vector (size,)")
        if self.generator.output_activation not in GENERATOR_OUTPUTS:
            raise SpecError("generator.output_activation", self.generator.output_activation, GENERATOR_OUTPUTS)
        if self.generator.output_shape != self.discriminator.input_shape:
            raise SpecError(
                "generator", f"samples of shape {self.generator.output_shape}",
                f"the discriminator's input shape {self.discriminator.input_shape}",
            )  # fmt: skip
        if self.discriminator.output_shape != (1,) or self.discriminator.output_activation != "sigmoid":
            raise SpecError(
                "discriminator", f"{self.discriminator.output_shape} {self.discriminator.output_activation} outputs",
                "one sigmoid output, the probability that its input is real",
            )  # fmt: skip

    @property
    def latent_size(self) -> int:
        return self.generator.input_shape[0]

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.discriminator.input_shape

    @property
    def generator_output(self) -> str:
        return self.generator.output_activation


# A GAN of either kind: their networks, losses and training are alike (``kind`` "gan").
GAN_SPECS = (GANSpec, ConvGANSpec)


def input_dtype(spec: object) -> str:
    """The dtype of a model's inputs: token ids for a Transformer, float32 values otherwise."""
    return "int32" if getattr(spec, "kind", None) == "transformer" else "float32"


ModelSpec = MLPSpec | CNNSpec | ResNetSpec | RNNSpec | TransformerSpec | VAESpec | GANSpec | ConvGANSpec


def _relu() -> Act:
    return Act("relu")


VISION_ZOO: tuple[ModelSpec, ...] = (
    # The Keras MNIST convnet: two valid 3×3 convs with 2×2 max-pooling, then Dense 10; 34,826 parameters.
    CNNSpec(
        "mnist_cnn",
        (28, 28, 1),
        (Conv2D(32, 3), _relu(), Pool2D("max", 2), Conv2D(64, 3), _relu(), Pool2D("max", 2), Flatten(), Dense(10)),
        "softmax",
    ),
    # The PyTorch CIFAR-10 "SimpleCNN": 3×3 convs with padding 1, torch's default init; 1,070,794 parameters.
    CNNSpec(
        "cifar_simple_cnn",
        (32, 32, 3),
        (
            Conv2D(32, 3, padding=SAME_3X3),
            _relu(),
            Pool2D("max", 2),
            Conv2D(64, 3, padding=SAME_3X3),
            _relu(),
            Pool2D("max", 2),
            Flatten(),
            Dense(256),
            _relu(),
            Dense(10),
        ),
        "softmax",
        kernel_initializer="torch_default",
        bias_initializer="torch_default",
    ),
    # The classic 64×64 RGB binary classifier (cats vs dogs): two conv/pool stages, Dense 128, sigmoid.
    CNNSpec(
        "cnn_64",
        (64, 64, 3),
        (
            Conv2D(32, 3),
            _relu(),
            Pool2D("max", 2),
            Conv2D(64, 3),
            _relu(),
            Pool2D("max", 2),
            Flatten(),
            Dense(128),
            _relu(),
            Dense(1),
        ),
        "sigmoid",
    ),
    # A small CNN for the embedded 8×8 digits, trained to convergence by the digits_cnn recipe.
    CNNSpec(
        "digits_cnn",
        (8, 8, 1),
        (
            Conv2D(16, 3, padding="same"),
            _relu(),
            Conv2D(32, 3, padding="same"),
            _relu(),
            Pool2D("max", 2),
            Flatten(),
            Dense(64),
            _relu(),
            Dense(10),
        ),
        "softmax",
        kernel_initializer="he_uniform",
    ),
    # ResNet-18 for 32×32 images with the CIFAR stem: 11,173,962 parameters (plus 9,600 running statistics).
    ResNetSpec("resnet18_cifar", (32, 32, 3), 10, "cifar"),
    # torchvision's resnet18 (ImageNet stem) with a 10-class head, as fine-tuned on CIFAR-10.
    ResNetSpec("resnet18_imagenet_stem", (32, 32, 3), 10, "imagenet"),
    # ResNet-18 with 1/8 of the width, for training runs on a CPU (digits upsampled to 32×32).
    ResNetSpec("resnet18_narrow", (32, 32, 1), 10, "cifar", widths=(8, 16, 32, 64)),
)


def _torch_forecaster(name: str, cell: str) -> RNNSpec:
    """One feature per step, 30 steps, 2 layers of 50 units, one output; torch's default init."""
    torch_init = "torch_default"
    return RNNSpec(
        name, cell, 1, 50, 30, 1, "linear", num_layers=2,
        kernel_initializer=torch_init, recurrent_initializer=torch_init, bias_initializer=torch_init,
    )  # fmt: skip


def _conv_autoencoder() -> CNNSpec:
    # A convolutional autoencoder for the 8×8 digits (the layout of Keras's image-denoising example,
    # sized down): conv16 3×3 relu → maxpool 2 → conv8 relu → maxpool 2, a 2×2×8 code; then two 3×3
    # stride-2 transposed convs (8, 16 channels, relu) back to 8×8 and a 3×3 conv to one sigmoid
    # channel. 'same' at stride 2 crops the odd pixel off the bottom/right, which torch must do by
    # hand. Biases start non-zero, as in digits_autoencoder (ReLU kinks).
    layers = (
        Conv2D(16, 3, padding="same"), _relu(), Pool2D("max", 2),
        Conv2D(8, 3, padding="same"), _relu(), Pool2D("max", 2),
        ConvTranspose2D(8, 3, 2, "same"), _relu(),
        ConvTranspose2D(16, 3, 2, "same"), _relu(),
        Conv2D(1, 3, padding="same"),
    )  # fmt: skip
    return CNNSpec("digits_conv_autoencoder", (8, 8, 1), layers, "sigmoid", bias_initializer="torch_default")


def _digits_dcgan() -> ConvGANSpec:
    # A DCGAN-style GAN for the 8×8 digits (Radford et al.'s layout, sized down, without BatchNorm):
    # the generator maps z of 32 through Dense 4·4·64 relu, a reshape to 4×4×64, a 4×4 stride-2
    # transposed conv (32, relu; torch's 4/2/1) to 8×8 and a 3×3 one to a sigmoid channel; the
    # discriminator reads it with two 4×4 stride-2 convs (32, 64 channels, leaky ReLU 0.2) to 2×2×64,
    # flattened into one logit. Biases start non-zero (torch's init): with zeros, a window over the
    # blank corner of a real digit puts its unit exactly on leaky ReLU's kink (as in digits_autoencoder).
    leaky = Act("leaky_relu(0.2)")
    generator = (
        Dense(4 * 4 * 64), _relu(), Reshape((4, 4, 64)),
        ConvTranspose2D(32, 4, 2, "same"), _relu(),
        ConvTranspose2D(1, 3, 1, "same"),
    )  # fmt: skip
    discriminator = (Conv2D(32, 4, 2, "same"), leaky, Conv2D(64, 4, 2, "same"), leaky, Flatten(), Dense(1))
    return ConvGANSpec(
        "digits_dcgan",
        CNNSpec("digits_dcgan_generator", (32,), generator, "sigmoid", bias_initializer="torch_default"),
        CNNSpec("digits_dcgan_discriminator", (8, 8, 1), discriminator, "sigmoid", bias_initializer="torch_default"),
    )


SEQUENCE_ZOO: dict[str, RNNSpec] = {
    spec.name: spec
    for spec in (
        # The classic Keras SimpleRNN example: 100 steps of one feature, 32 tanh units, Dense(1, sigmoid).
        RNNSpec("simple_rnn_classifier", "simple_rnn", 1, 32, 100, 1, "sigmoid"),
        # The classic PyTorch time-series LSTM: 2 stacked layers of 50 units, Linear on the last step;
        # torch's init. And the same forecaster with GRU layers (torch's and Keras's default
        # reset-after formula).
        _torch_forecaster("lstm_forecaster", "lstm"),
        _torch_forecaster("gru_forecaster", "gru"),
        # Keras's original GRU formula (reset before the recurrent matmul), on the adding problem.
        RNNSpec("gru_reset_before", "gru", 2, 32, 50, 1, "linear", gru_reset="before"),
        # A bidirectional LSTM tagging every step of the sequence (return-sequences mode).
        RNNSpec("bilstm_tagger", "lstm", 2, 16, 20, 1, "sigmoid", bidirectional=True, head="sequence"),
        # A bidirectional 2-layer GRU reading the last states of both directions.
        RNNSpec("bigru_classifier", "gru", 2, 16, 20, 1, "sigmoid", num_layers=2, bidirectional=True),
    )
}


TRANSFORMER_ZOO: dict[str, TransformerSpec] = {
    spec.name: spec
    for spec in (
        # The classic encoder classifier (torch's defaults: post-norm, ReLU, LayerNorm ε 1e-5,
        # sinusoidal positions, embeddings scaled by √d_model), mean-pooled over the non-padding
        # tokens, on the majority-token task. Embeddings start small, U(±0.05) (Keras's init): with
        # torch's N(0, 1) times √d_model, first-layer attention scores start near 30, the softmax
        # near one-hot, and the loss so sensitive that float32 rounding differences between
        # frameworks grow tenfold per step (measured: 1e-7 → 2e-3 in six steps).
        TransformerSpec("transformer_classifier", 9, 24, 32, 4, 64, 2, 8, "softmax", embedding_initializer="uniform"),
        # The modern variant (pre-norm, GELU with the tanh approximation, learned positions, Flax's
        # LayerNorm ε 1e-6) tagging every position: does its token occur elsewhere in the sequence?
        TransformerSpec(
            "transformer_tagger", 33, 24, 32, 4, 64, 2, 1, "sigmoid",
            activation="gelu(tanh)", positional="learned", norm="pre", layer_norm_epsilon=1e-6, pooling="none",
        ),
    )
}  # fmt: skip


ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # The classic MNIST net (Chollet, "Deep Learning with Python", ch. 2): Dense 512 relu → Dense 10
        # softmax on flattened 28×28 images; 407,050 parameters.
        MLPSpec(
            name="mnist_mlp",
            input_size=784,
            hidden_sizes=(512,),
            output_size=10,
            activations=("relu",),
            output_activation="softmax",
        ),
        # A deeper net for the embedded 8×8 digits: 64 → 64 → 32 → 10.
        MLPSpec(
            name="digits_mlp",
            input_size=64,
            hidden_sizes=(64, 32),
            output_size=10,
            activations=("relu", "relu"),
            output_activation="softmax",
        ),
        # The same depth with the activations whose defaults differ most between frameworks.
        MLPSpec(
            name="digits_mlp_smooth",
            input_size=64,
            hidden_sizes=(64, 32),
            output_size=10,
            activations=("gelu(exact)", "elu(1.0)"),
            output_activation="softmax",
            kernel_initializer="he_normal",
        ),
        # A dense autoencoder for the 8×8 digits: 64 → 32 → 8 (the code) → 32 → 64 sigmoid pixels,
        # trained to reconstruct its input (the digits_autoencoder recipe). Biases start non-zero
        # (torch's init): with zeros, an image whose 8 code units are all negative puts the next
        # layer's inputs exactly on ReLU's kink, where finite differences see half the slope that
        # every framework's ReLU'(0) = 0 gives (seen at init on 1 image in 64).
        MLPSpec(
            name="digits_autoencoder",
            input_size=64,
            hidden_sizes=(32, 8, 32),
            output_size=64,
            activations="relu",
            output_activation="sigmoid",
            bias_initializer="torch_default",
        ),
        _conv_autoencoder(),
        # The classic VAE on flattened 28×28 images: 784 → 256 relu → mean and log-variance of a
        # 10-dimensional latent; 10 → 256 relu → 784 sigmoid; binary cross-entropy summed over the
        # pixels plus the KL term.
        VAESpec("mnist_vae"),
        # An MLP GAN for the 2-D ring of Gaussians (spec.data.mixture): z of 8 → 64 → 64 relu → a point;
        # the discriminator 2 → 64 → 64 leaky ReLU(0.2) → one logit.
        GANSpec("ring_gan", 8, 2, (64, 64), (64, 64)),
        # An MLP GAN for the 8×8 digits: z of 32 → 256 relu → 64 sigmoid pixels; 64 → 256 leaky ReLU → 1.
        GANSpec("digits_gan", 32, 64, (256,), (256,), generator_output="sigmoid"),
        _digits_dcgan(),
        *VISION_ZOO,
        *SEQUENCE_ZOO.values(),
        *TRANSFORMER_ZOO.values(),
    )
}


def get_model(name: str) -> ModelSpec:
    """The zoo model called ``name``."""
    try:
        return ZOO[name]
    except KeyError:
        raise SpecError("model", name, sorted(ZOO)) from None
