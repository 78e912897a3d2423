"""The spec's models as ``torch.nn.Module``s, on NCHW images."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from spec.errors import UnsupportedOption
from spec.layer_paths import LayerPaths, NativePath
from spec.layers import (
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
    Pads,
    Pool2D,
    Reshape,
    layer_output_shape,
    resolve_padding,
)
from spec.models import (
    CNNSpec,
    ConvGANSpec,
    GANSpec,
    MLPSpec,
    ModelSpec,
    ResidualBlock,
    ResNetSpec,
    RNNSpec,
    TransformerSpec,
    VAESpec,
)
from spec.params import (
    Precision,
    cnn_layer_names,
    dense_name,
    encoder_layer_name,
    rnn_layer_names,
    sinusoidal_positions,
)


def activation(act: Activation) -> nn.Module:
    """The torch module for a spec activation, every parameter passed explicitly."""
    match act.kind:
        case "relu":
            return nn.ReLU()
        case "tanh":
            return nn.Tanh()
        case "sigmoid":
            return nn.Sigmoid()
        case "leaky_relu":
            assert act.negative_slope is not None  # Activation requires it for leaky_relu
            return nn.LeakyReLU(negative_slope=act.negative_slope)  # (catalogue: leaky ReLU slope)
        case "elu":
            assert act.alpha is not None  # Activation requires it for elu
            return nn.ELU(alpha=act.alpha)
        case "gelu":
            return nn.GELU(approximate="none" if act.approximate == "exact" else "tanh")  # (catalogue: GELU)
        case "linear":
            return nn.Identity()
    raise ValueError(f"no torch module for activation {act}")


def output_activation(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The model's outputs from its logits (softmax over the last axis, sigmoid or identity)."""
    if kind == "softmax":
        return torch.softmax(logits, dim=-1)
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    return logits


@contextlib.contextmanager
def recording_outputs(layers: Mapping[str, nn.Module]) -> Iterator[dict[str, np.ndarray]]:
    """While open, what each of ``layers`` returns, by name (forward hooks): as float64 copies (an
    in-place activation after a layer would change its output), feature maps NHWC, of a tuple (an
    RNN's outputs and state) its first element."""
    found: dict[str, np.ndarray] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(_: nn.Module, __: object, output: object) -> None:
            value = output[0] if isinstance(output, tuple) else output
            assert isinstance(value, torch.Tensor), f"{name} returned a {type(value).__name__}"
            if value.is_nested:  # an encoder fast path's padded positions, dropped: as zeros
                value = value.to_padded_tensor(0.0)
            value = value.detach().cpu().to(torch.float64, copy=True)
            found[name] = (value.permute(0, 2, 3, 1) if value.ndim == 4 else value).numpy()

        return hook

    hooks = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
    try:
        yield found
    finally:
        for hook in hooks:
            hook.remove()


class SpecModel(nn.Module):
    """What every model adds to ``nn.Module``: its spec, where each canonical layer is
    (``layer_paths``, recorded as it builds them), its outputs, its L2 term, and BatchNorm layers
    that stay in evaluation mode while frozen (``frozen_batchnorms``, set by
    :func:`impls.torch.weights.freeze`)."""

    spec: ModelSpec
    layer_paths: LayerPaths = LayerPaths()
    precision: Precision = "float32"  # the dtype of its tensors, set by spec.backend.NativeBackend.build
    frozen_batchnorms: tuple[nn.Module, ...] = ()
    # parameters a torch layer insists on having that the spec's model does not (see RNN)
    held_at_zero: tuple[nn.Parameter, ...] = ()

    def train(self, mode: bool = True) -> SpecModel:
        super().train(mode)
        for batchnorm in self.frozen_batchnorms:  # normalise with, and keep, their running statistics
            batchnorm.eval()
        return self

    def l2_penalty(self) -> torch.Tensor | float:
        """The spec's L2 term of the training loss: ``kernel_l2 · Σ‖W‖²`` over the trained conv and
        Linear weights (the float 0.0 when none is trained)."""
        layers = (m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)))
        kernels = (m.weight for m in layers if m.weight.requires_grad)
        return self.spec.kernel_l2 * sum(w.square().sum() for w in kernels)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs: logits passed through the spec's output activation."""
        return output_activation(self(x), self.spec.output_activation)


class MLP(SpecModel):
    """Linear layers with an activation (and dropout) after each hidden one; ``forward`` returns logits."""

    spec: MLPSpec

    def __init__(self, spec: MLPSpec) -> None:
        super().__init__()
        self.spec = spec
        sizes = spec.layer_sizes
        self.dense = nn.ModuleList(
            nn.Linear(fan_in, fan_out, bias=spec.use_bias) for fan_in, fan_out in pairwise(sizes)
        )
        self.layer_paths = LayerPaths({dense_name(i): ("dense", i) for i in range(len(self.dense))})
        self.activations = nn.ModuleList(activation(a) for a in spec.activations)
        self.dropout = nn.Dropout(spec.dropout)  # the identity in eval mode and at rate 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.dense, self.activations):
            x = self.dropout(act(layer(x)))
        return self.dense[-1](x)


class _BiasedRunningVariance(_BatchNorm):
    """torch updates ``running_var`` with the unbiased batch variance; a spec asking for the biased
    one (as Keras and Flax use) gets this forward: the same normalisation by batch statistics, and
    the running statistics updated with the biased variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        # batchnorm() builds these layers with running statistics and a momentum, which torch's types leave optional
        assert self.running_mean is not None and self.running_var is not None and self.momentum is not None
        assert self.num_batches_tracked is not None
        dims = [0, *range(2, x.ndim)]
        # in the statistics' own dtype: under autocast x may be bfloat16 or float16, and torch's own
        # batch_norm also computes a low-precision batch's statistics in float32
        statistics = x.to(self.running_mean.dtype)
        # (catalogue: BatchNorm running variance)
        mean, var = statistics.mean(dims), statistics.var(dims, unbiased=False)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class BiasedBatchNorm2d(_BiasedRunningVariance, nn.BatchNorm2d):
    pass


class BiasedBatchNorm1d(_BiasedRunningVariance, nn.BatchNorm1d):
    pass


def batchnorm(layer: BatchNorm, channels: int, image: bool) -> nn.Module:
    """``nn.BatchNorm2d`` (or ``1d`` after the flatten) following the spec: torch's momentum is the
    weight of the new batch, 1 − the spec's."""
    if layer.running_variance == "unbiased":
        kind = nn.BatchNorm2d if image else nn.BatchNorm1d
    else:
        kind = BiasedBatchNorm2d if image else BiasedBatchNorm1d
    return kind(channels, eps=layer.epsilon, momentum=1.0 - layer.momentum)  # (catalogue: BatchNorm momentum)


def _symmetric(pads: Pads) -> bool:
    return pads[0][0] == pads[0][1] and pads[1][0] == pads[1][1]


def _pad_module(pads: Pads, value: float) -> nn.Module:
    """Explicit padding of an NCHW tensor (torch's own padding arguments are symmetric only)."""
    (top, bottom), (left, right) = pads
    return nn.ConstantPad2d((left, right, top, bottom), value)


def layer_modules(layer: Layer, name: str, shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    """The torch module(s) for one spec layer whose input has (NHWC) ``shape``, keyed by ``name``;
    an asymmetric or over-wide padding comes first as its own ``<name>_pad`` module."""
    image = len(shape) == 3
    match layer:
        case Conv2D():
            pads = resolve_padding(layer.padding, (shape[0], shape[1]), layer.kernel_size, layer.strides)
            conv, symmetric = _with_symmetric_padding(nn.Conv2d, layer, shape[2], pads)
            return [(name, conv)] if symmetric else [(f"{name}_pad", _pad_module(pads, 0.0)), (name, conv)]
        case ConvTranspose2D():
            return _conv_transpose_modules(layer, name, shape)
        case Pool2D():
            return _pool_modules(layer, name, shape)
        case BatchNorm():
            return [(name, batchnorm(layer, shape[-1], image))]
        case Act():
            return [(name, activation(layer.activation))]
        case Flatten():
            # (catalogue: flatten order)
            return [(name, nn.Flatten())]  # (c, h, w) order: weights.py reorders the next kernel's rows
        case Reshape():  # to (c, h, w): weights.py reorders the columns of the Dense before it
            # (catalogue: reshape to an image)
            height, width, channels = layer.target_shape
            return [(name, nn.Unflatten(1, (channels, height, width)))]
        case GlobalAvgPool():
            return [(name, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))]
        case Dense():
            return [(name, nn.Linear(shape[0], layer.units, bias=layer.use_bias))]
        case Dropout():
            return [(name, nn.Dropout(layer.rate))]
    raise ValueError(f"no torch module for layer {layer}")


def _with_symmetric_padding(
    kind: type[nn.Conv2d | nn.ConvTranspose2d], layer: Conv2D | ConvTranspose2D, channels: int, pads: Pads
) -> tuple[nn.Module, bool]:
    """The torch conv for ``layer``, with ``pads`` as its own ``padding`` (a transposed conv's:
    cropped) where they are symmetric, else none: whether they were is the second value."""
    symmetric = _symmetric(pads)
    padding = (pads[0][0], pads[1][0]) if symmetric else 0
    conv = kind(channels, layer.filters, layer.kernel_size, layer.strides, padding=padding, bias=layer.use_bias)
    return conv, symmetric


class Crop2d(nn.Module):
    """Cuts ((top, bottom), (left, right)) pixels off the edges of an NCHW tensor: a transposed
    conv's asymmetric 'same' crop, which ``ConvTranspose2d``'s symmetric ``padding`` cannot express."""

    def __init__(self, crops: Pads) -> None:
        super().__init__()
        self.crops = crops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = self.crops
        return x[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right]


def _conv_transpose_modules(layer: ConvTranspose2D, name: str, shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    """``nn.ConvTranspose2d``, whose ``padding`` crops both sides alike (DCGAN's 4×4/s2/p1 is the
    spec's 'same'); an asymmetric crop, e.g. 3×3/s2 'same' → (0, 1), follows as ``<name>_crop``."""
    crops = layer.crops()
    conv, symmetric = _with_symmetric_padding(nn.ConvTranspose2d, layer, shape[2], crops)
    # (catalogue: transposed conv padding)
    return [(name, conv)] if symmetric else [(name, conv), (f"{name}_crop", Crop2d(crops))]


def _pool_modules(layer: Pool2D, name: str, shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    pads = resolve_padding(layer.padding, (shape[0], shape[1]), layer.pool_size, layer.strides)
    # torch pads inside the pool only symmetrically and by at most half the window
    native = _symmetric(pads) and all(2 * p[0] <= k for p, k in zip(pads, layer.pool_size))
    padding = (pads[0][0], pads[1][0]) if native else 0
    if layer.kind == "max":
        pool: nn.MaxPool2d | nn.AvgPool2d = nn.MaxPool2d(layer.pool_size, layer.strides, padding=padding)
        # (catalogue: max-pool padding)
        return [(name, pool)] if native else [(f"{name}_pad", _pad_module(pads, float("-inf"))), (name, pool)]
    count_padding = bool(layer.count_padding) or layer.padding == "valid"
    if not native and not count_padding:
        raise UnsupportedOption(
            "torch", "pool.padding", pads, "AvgPool2d excludes padding only when it pads symmetrically", native=None
        )
    # (catalogue: average-pool padding)
    pool = nn.AvgPool2d(layer.pool_size, layer.strides, padding=padding, count_include_pad=count_padding)
    return [(name, pool)] if native else [(f"{name}_pad", _pad_module(pads, 0.0)), (name, pool)]


class CNN(SpecModel):
    """The spec's layers in order, as one ``nn.Sequential`` (``body``) whose children carry the
    canonical layer names (``conv_0``, ``dense_1`` …); ``forward`` takes NCHW images and returns logits."""

    spec: CNNSpec

    def __init__(self, spec: CNNSpec) -> None:
        super().__init__()
        self.spec = spec
        modules: list[tuple[str, nn.Module]] = []
        canonical = [name for name in cnn_layer_names(spec) if name is not None]
        for i, (name, layer, shape) in enumerate(zip(cnn_layer_names(spec), spec.layers, spec.shapes())):
            modules += layer_modules(layer, name or f"{type(layer).__name__.lower()}_{i}", shape)
        self.body = nn.Sequential(OrderedDict(modules))
        self.layer_paths = LayerPaths({name: ("body", name) for name in canonical})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResidualBlockBase(nn.Module):
    """The shortcut both residual blocks share: the input itself, or shortcut_conv 1×1/stride →
    shortcut_bn where the shape changes (torchvision's ``downsample``)."""

    def __init__(self, block: ResidualBlock, bn: BatchNorm) -> None:
        super().__init__()
        self.has_shortcut_conv = block.has_shortcut_conv
        if block.has_shortcut_conv:
            self.shortcut_conv = nn.Conv2d(block.in_channels, block.out_channels, 1, block.stride, bias=False)
            self.shortcut_bn = batchnorm(bn, block.out_channels, image=True)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_bn(self.shortcut_conv(x)) if self.has_shortcut_conv else x

    @property
    def layer_paths(self) -> LayerPaths:
        """Its layers' paths: each is a child under its canonical name (``conv_a``, ``shortcut_bn`` …)."""
        return LayerPaths({name: (name,) for name, _ in self.named_children()})


class BasicBlock(ResidualBlockBase):
    """conv_a → bn_a → relu → conv_b → bn_b, plus the (projected) input, then relu."""

    def __init__(self, block: ResidualBlock, bn: BatchNorm) -> None:
        super().__init__(block, bn)
        self.conv_a = nn.Conv2d(block.in_channels, block.width, 3, block.stride, padding=1, bias=False)
        self.bn_a = batchnorm(bn, block.width, image=True)
        self.conv_b = nn.Conv2d(block.width, block.width, 3, 1, padding=1, bias=False)
        self.bn_b = batchnorm(bn, block.width, image=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(ResidualBlockBase):
    """conv_a 1×1 → bn_a → relu → conv_b 3×3/stride → bn_b → relu → conv_c 1×1 (4× wider) → bn_c, plus
    the (projected) input, then relu: torchvision's Bottleneck (its conv1–3, bn1–3)."""

    def __init__(self, block: ResidualBlock, bn: BatchNorm) -> None:
        super().__init__(block, bn)
        self.conv_a = nn.Conv2d(block.in_channels, block.width, 1, bias=False)
        self.bn_a = batchnorm(bn, block.width, image=True)
        self.conv_b = nn.Conv2d(block.width, block.width, 3, block.stride, padding=1, bias=False)
        self.bn_b = batchnorm(bn, block.width, image=True)
        self.conv_c = nn.Conv2d(block.width, block.out_channels, 1, bias=False)
        self.bn_c = batchnorm(bn, block.out_channels, image=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = F.relu(self.bn_b(self.conv_b(out)))
        out = self.bn_c(self.conv_c(out))
        return F.relu(out + self.shortcut(x))


class ResNet(SpecModel):
    """Stem, stages of residual blocks, global average pooling and a Linear head (torchvision's layout,
    with the spec's names: ``stem.conv``, ``stages.stage_1.block_0.conv_a`` …)."""

    spec: ResNetSpec

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        stem: list[tuple[str, nn.Module]] = []
        shape: tuple[int, ...] = spec.input_shape
        stem_layers: tuple[Layer, ...] = spec.stem_layers  # each built alike, whatever its kind
        for name, layer in zip(("conv", "bn", "relu", "pool"), stem_layers):
            stem += layer_modules(layer, name, shape)
            shape = layer_output_shape(layer, shape)
        self.stem = nn.Sequential(OrderedDict(stem))
        paths = LayerPaths({"stem/conv": ("stem", "conv"), "stem/bn": ("stem", "bn")})
        stages: dict[str, nn.Sequential] = {}
        for block in spec.blocks():
            stage, name = f"stage_{block.stage}", f"block_{block.index}"
            residual_block = (Bottleneck if block.bottleneck else BasicBlock)(block, spec.batchnorm)
            stages.setdefault(stage, nn.Sequential()).add_module(name, residual_block)
            paths |= residual_block.layer_paths.under(block.name, "stages", stage, name)
        self.stages = nn.ModuleDict(stages)
        self.head = nn.Linear(spec.head_features, spec.num_classes)
        self.layer_paths = paths | {"head": ("head",)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages.values():
            x = stage(x)
        return self.head(x.mean(dim=(2, 3)))


class RNN(SpecModel):
    """``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (batch-first, stacked, optionally bidirectional) and a
    Linear head on the last states or on every step; ``forward`` returns logits.

    torch's recurrent layers always hold two biases, ``b_ih`` and ``b_hh``, and only their sum enters
    the SimpleRNN and LSTM cells: the spec's one bias is ``b_ih``, and ``b_hh`` is held at zero,
    out of training (trained too, it would double the bias's effective learning rate), and out of
    the parameter count (``held_at_zero``). A state dict loaded natively may hold a non-zero
    ``b_hh``: the export adds it to ``b_ih``, and loading canonical parameters zeroes it again
    (:class:`impls.torch.weights.Binding`). The GRU's ``b_hh`` is the spec's recurrent bias (it sits
    inside ``r·(W_hn h + b_hn)``).
    """

    spec: RNNSpec

    def __init__(self, spec: RNNSpec) -> None:
        super().__init__()
        self.spec = spec
        if spec.cell == "gru" and spec.gru_reset == "before":
            raise UnsupportedOption(
                "torch",
                "gru_reset",
                "before",
                "nn.GRU applies the reset gate after the recurrent matmul",  # (catalogue: GRU reset gate)
                native="after",
            )
        layer = {"simple_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[spec.cell]
        options = {"nonlinearity": "tanh"} if spec.cell == "simple_rnn" else {}
        self.recurrent = layer(
            spec.input_size,
            spec.hidden_size,
            num_layers=spec.num_layers,
            bias=True,
            batch_first=True,
            bidirectional=spec.bidirectional,
            **options,
        )
        if not spec.has_recurrent_bias:
            held = [param for name, param in self.recurrent.named_parameters() if name.startswith("bias_hh")]
            for param in held:
                nn.init.zeros_(param)
                param.requires_grad_(False)  # (catalogue: recurrent biases)
            self.held_at_zero = tuple(held)
        # one nn.RNN holds every layer and direction: weights.py picks their tensors by suffix
        paths = {name: ("recurrent",) for index in range(spec.num_layers) for name in rnn_layer_names(spec, index)}
        if spec.head == "attention":
            additive = spec.attention == "additive"
            self.attention = nn.Linear(spec.features, spec.attention_units) if additive else None
            self.attention_score = nn.Linear(spec.attention_units if additive else spec.features, 1, bias=False)
            paths |= {"attention": ("attention",)} if additive else {}
            paths["attention_score"] = ("attention_score",)
        self.head = nn.Linear(spec.features, spec.output_size)
        self.layer_paths = LayerPaths({**paths, "dense_0": ("head",)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.recurrent(x)
        if self.spec.head == "sequence":
            return self.head(outputs)
        if self.spec.head == "attention":
            return self.head(self.pool(outputs))
        # outputs[:, -1] would hold the backward direction after one step only: its final state
        # is at step 0
        hidden = self.spec.hidden_size
        last = outputs[:, -1, :hidden]
        if self.spec.bidirectional:
            last = torch.cat([last, outputs[:, 0, hidden:]], dim=-1)  # (catalogue: last state of a bidirectional layer)
        return self.head(last)

    def pool(self, outputs: torch.Tensor) -> torch.Tensor:
        """Every step's output weighted by the softmax over the steps of its score, summed."""
        keys = outputs if self.attention is None else torch.tanh(self.attention(outputs))
        weights = self.attention_score(keys).softmax(dim=1)  # (batch, time, 1)
        return (weights * outputs).sum(dim=1)


# canonical sub-layer of an encoder layer -> its nn.TransformerEncoderLayer attribute
ENCODER_PARTS = {
    "attention/output": "self_attn.out_proj",
    "attention_norm": "norm1",
    "ffn_0": "linear1",
    "ffn_1": "linear2",
    "ffn_norm": "norm2",
}


class Transformer(SpecModel):
    """``nn.Embedding``, positions, ``nn.TransformerEncoder`` (batch-first ``nn.TransformerEncoderLayer``s,
    no dropout; pre-norm adds the encoder's final ``norm``), pooling and a Linear head; ``forward``
    takes token ids and returns logits. The padding mask is ``src_key_padding_mask`` (True = ignore,
    torch's convention), which masks keys only, as the spec does."""

    spec: TransformerSpec

    def __init__(self, spec: TransformerSpec) -> None:
        super().__init__()
        if spec.key_dim is not None and spec.attention_width != spec.d_model:
            raise UnsupportedOption(
                "torch",
                "key_dim",
                spec.key_dim,
                "nn.MultiheadAttention splits d_model into its heads (head size d_model / num_heads)",
                native=spec.d_model // spec.num_heads if spec.d_model % spec.num_heads == 0 else None,
            )
        self.spec = spec
        d_model = spec.d_model
        self.embedding = nn.Embedding(spec.vocab_size, d_model)
        self.scale = math.sqrt(d_model) if spec.scale_embedding else 1.0
        paths: dict[str, NativePath] = {"embedding": ("embedding",)}
        if spec.positional == "learned":  # a table indexed by position, as BERT's
            self.position_embeddings = nn.Embedding(spec.seq_len, d_model)
            paths["position"] = ("position_embeddings",)
        else:  # a constant: a buffer, left out of the state dict
            # in float64 as computed: the backend's `.to(dtype)` rounds it to the model's precision
            table = torch.tensor(sinusoidal_positions(spec.seq_len, d_model), dtype=torch.float64)
            self.register_buffer("sinusoidal_positions", table, persistent=False)
        gelu = partial(F.gelu, approximate="none" if spec.activation.approximate == "exact" else "tanh")
        layer = nn.TransformerEncoderLayer(
            d_model,
            spec.num_heads,
            dim_feedforward=spec.ff_size,
            dropout=0.0,
            activation=F.relu if spec.activation.kind == "relu" else gelu,
            layer_norm_eps=spec.layer_norm_epsilon,  # (catalogue: LayerNorm epsilon)
            batch_first=True,
            norm_first=spec.norm == "pre",
        )
        final_norm = nn.LayerNorm(d_model, eps=spec.layer_norm_epsilon) if spec.norm == "pre" else None
        # nested tensors would drop the padded positions, which the spec defines (and a per-position head reads)
        # (catalogue: padding mask)
        self.encoder = nn.TransformerEncoder(layer, spec.num_layers, norm=final_norm, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, spec.output_size)
        for index in range(spec.num_layers):
            encoder, native = encoder_layer_name(index), ("encoder", "layers", index)
            # q, k and v are packed in one in_proj_weight of self_attn (weights.py splits it)
            # (catalogue: attention weights)
            paths |= {f"{encoder}/attention/{part}": (*native, "self_attn") for part in ("query", "key", "value")}
            paths |= {f"{encoder}/{part}": (*native, *attr.split(".")) for part, attr in ENCODER_PARTS.items()}
        if final_norm is not None:
            paths["final_norm"] = ("encoder", "norm")
        self.layer_paths = LayerPaths({**paths, "dense_0": ("head",)})

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        padding = None if spec.pad_token is None else tokens == spec.pad_token
        learned = spec.positional == "learned"
        positions = self.position_embeddings.weight if learned else self.sinusoidal_positions
        x = self.embedding(tokens) * self.scale + positions
        x = self.encoder(x, src_key_padding_mask=padding)
        if spec.pooling == "mean":
            if padding is None:
                x = x.mean(dim=1)
            else:
                keep = (~padding).unsqueeze(-1).to(x.dtype)
                x = (x * keep).sum(dim=1) / keep.sum(dim=1)
        elif spec.pooling == "first":
            x = x[:, 0]
        return self.head(x)


class VAEOutput(NamedTuple):
    """What a VAE's forward returns: the decoder's logits and q(z|x)'s parameters, all the loss needs."""

    logits: torch.Tensor
    mean: torch.Tensor
    log_variance: torch.Tensor


def logits_of(output: torch.Tensor | VAEOutput) -> torch.Tensor:
    """A model's logits from what its forward returned."""
    return output.logits if isinstance(output, VAEOutput) else output


class VAE(SpecModel):
    """Encoder and decoder MLPs with the reparameterisation between them; ``forward`` takes images
    with their noise ε side by side (see :class:`spec.models.VAESpec`)."""

    spec: VAESpec

    def __init__(self, spec: VAESpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = MLP(spec.encoder)
        self.decoder = MLP(spec.decoder)
        self.layer_paths = self.encoder.layer_paths.under("encoder", "encoder") | self.decoder.layer_paths.under(
            "decoder", "decoder"
        )

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z|x)."""
        mean, log_variance = self.encoder(images).chunk(2, dim=-1)
        return mean, log_variance

    def forward(self, inputs: torch.Tensor) -> VAEOutput:
        images, noise = inputs.split([self.spec.input_size, self.spec.latent_size], dim=-1)
        mean, log_variance = self.encode(images)
        z = mean + torch.exp(0.5 * log_variance) * noise
        return VAEOutput(self.decoder(z), mean, log_variance)

    def infer(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(inputs).logits)


class GAN(SpecModel):
    """Generator and discriminator (MLPs, or CNNs for a DCGAN); ``forward`` maps latent noise to
    the generator's logits (``infer``: the samples). The training losses use both
    (:func:`impls.torch.losses.gan_loss`)."""

    spec: GANSpec | ConvGANSpec

    def __init__(self, spec: GANSpec | ConvGANSpec) -> None:
        super().__init__()
        self.spec = spec
        network = MODEL_CLASSES  # each network is the model of its own spec
        self.generator = network[type(spec.generator)](spec.generator)
        self.discriminator = network[type(spec.discriminator)](spec.discriminator)
        self.layer_paths = self.generator.layer_paths.under(
            "generator", "generator"
        ) | self.discriminator.layer_paths.under("discriminator", "discriminator")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


# The native class that builds each kind of spec (spec.backend.NativeBackend.build).
MODEL_CLASSES: dict[type[ModelSpec], Callable[..., SpecModel]] = {
    MLPSpec: MLP,
    CNNSpec: CNN,
    ResNetSpec: ResNet,
    RNNSpec: RNN,
    TransformerSpec: Transformer,
    VAESpec: VAE,
    GANSpec: GAN,
    ConvGANSpec: GAN,
}
