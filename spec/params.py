"""Canonical parameters: the one naming and layout convention every backend converts to and from.

Layout convention (the only place it is defined):

* Parameters are a flat ordered mapping ``name -> numpy array``. Names are ``<layer>/<variable>``,
  layers numbered from the input: an MLP with two hidden layers has ``dense_0``, ``dense_1`` and
  ``dense_2`` (the output layer), each with ``kernel`` and, when the spec has biases, ``bias``.
* Dense kernels are ``(in, out)``: ``y = x @ kernel + bias``. (torch stores ``(out, in)``; its
  backend transposes at its edge.)
* Images are NHWC; conv kernels ``(kh, kw, in, out)``, with fan_in = kh·kw·in and fan_out =
  kh·kw·out for the initializers. A Dense kernel after a Flatten has its rows in NHWC order
  (h, w, c), and one before a Reshape its columns (and bias). A transposed conv's kernel is
  ``(kh, kw, in, out)`` too, ``in`` its own input channels (:class:`spec.layers.ConvTranspose2D`);
  its fans are those torch and Keras compute, as for the convolution it is the gradient of:
  fan_in = kh·kw·out, fan_out = kh·kw·in.
* Sequences are batch-first ``(batch, time, features)``. A recurrent layer ``rnn_<i>`` (with
  ``/forward`` and ``/backward`` under it when bidirectional) holds ``kernel`` (in, G·H),
  ``recurrent_kernel`` (H, G·H) and ``bias`` (G·H,): the G gates concatenated along the last axis in
  the order of :data:`spec.models.GATES` (LSTM i, f, g, o; GRU r, z, n). An attention head pools
  the steps with ``attention_score`` (a Dense to one score, no bias), after ``attention`` (Dense +
  tanh) for an additive score. One bias per layer: the
  frameworks that keep two (torch's ``b_ih`` and ``b_hh``) only ever use their sum — except the
  reset-"after" GRU, whose recurrent bias sits inside ``r·(h·U_n + b'_n)``; its ``bias`` is then
  ``(2, G·H)``, the input bias in row 0 and the recurrent bias in row 1 (Keras's layout). The head
  after the recurrent layers is ``dense_0``.
* A Transformer encoder (token ids ``(batch, seq_len)``) holds ``embedding/embeddings`` (vocab,
  d_model), ``position/embeddings`` (seq_len, d_model) when positions are learned, layers
  ``encoder_<i>`` with ``attention/{query,key,value}/kernel`` (d_model, heads, head_dim) and
  ``/bias`` (heads, head_dim), ``attention/output/kernel`` (heads, head_dim, d_model) and ``/bias``
  (d_model,) — the layout of Keras's and Flax's attention; torch packs q, k and v as the rows of one
  (3·d_model, d_model) ``in_proj_weight``, head-major within each — ``attention_norm`` and
  ``ffn_norm`` (LayerNorm ``gamma`` and ``beta``), ``ffn_0`` and ``ffn_1`` (Dense); then
  ``final_norm`` (pre-norm only) and the head ``dense_0``.
* A VAE holds two MLPs named as above under ``encoder/`` and ``decoder/``: ``encoder/dense_1`` maps
  the hidden layer to [mean | log-variance] (2·latent columns, the mean's first). A GAN holds its
  two networks (MLPs, or sequential CNNs named as below) under ``generator/`` and ``discriminator/``.
* A sequential CNN numbers its layers per kind: ``conv_0``, ``conv_transpose_0``, ``batchnorm_0``,
  ``dense_0`` …; a ResNet names them by position: ``stem/conv``, ``stem/bn``, ``stage_1/block_0/conv_a`` (``bn_a``,
  ``conv_b``, ``bn_b``, a Bottleneck's ``conv_c`` and ``bn_c``, ``shortcut_conv``, ``shortcut_bn``) and ``head``.
* BatchNorm layers hold ``gamma`` and ``beta`` (trainable) and ``moving_mean`` and
  ``moving_variance`` (state, not trainable). Trainable parameters and state tensors share the
  mapping; each entry says whether it is trainable, and gradients cover the trainable ones only.
* Canonical values are float32 when exchanged with backends; the judge promotes them to float64.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

import numpy as np

from spec.errors import ParamError, SpecError
from spec.layers import BatchNorm, Conv2D, ConvTranspose2D, Dense, Flatten, Layer, Reshape
from spec.models import (
    GAN_SPECS,
    CNNSpec,
    ConvGANSpec,
    GANSpec,
    MLPSpec,
    ModelSpec,
    ResNetSpec,
    RNNSpec,
    TransformerSpec,
    VAESpec,
    is_frozen,
    is_within,
)
from spec.validation import mismatched_names

CANONICAL_DTYPE = np.float32
# What a backend can build a model in (spec.backend.Backend.build): float32, as the frameworks train
# and as canonical tensors are kept; float64, a witness whose rounding is far below float32's; or
# mixed precision as each framework does it natively — float32 variables, optimizer and inputs,
# most arithmetic in bfloat16 or float16 (torch.autocast, Keras's mixed_* dtype policies, Flax
# modules with a low-precision compute dtype). The names are Keras's policies'.
Precision = Literal["float32", "float64", "mixed_bfloat16", "mixed_float16"]
PRECISIONS: tuple[Precision, ...] = ("float32", "float64", "mixed_bfloat16", "mixed_float16")
MIXED_PRECISIONS: tuple[Precision, ...] = ("mixed_bfloat16", "mixed_float16")
VariableDtype = Literal["float32", "float64"]


def variable_dtype(precision: Precision) -> VariableDtype:
    """The dtype a model of ``precision`` holds its tensors in, and takes batches and gives
    outputs, exports and gradients in: float64 for a witness, float32 otherwise."""
    return "float64" if precision == "float64" else "float32"


def compute_dtype(precision: Precision) -> str:
    """The dtype most of a ``precision`` model's arithmetic runs in: ``bfloat16`` or ``float16`` for
    mixed precision (the frameworks keep some operations in float32: :mod:`spec.precision`), else
    its variables' dtype."""
    return precision.removeprefix("mixed_")


LAYOUTS = (
    "dense",
    "conv",
    "conv_transpose",
    "vector",
    "recurrent",
    "recurrent_bias",
    "embedding",
    "attention_in",
    "attention_bias",
    "attention_out",
)


@dataclass(frozen=True)
class ParamInfo:
    """Shape and role of one canonical tensor. ``layout`` says how backends convert it: a ``dense``
    kernel (in, out), a ``conv`` or ``conv_transpose`` kernel (kh, kw, in, out), a ``vector`` (biases, BatchNorm), or a
    recurrent layer's tensor, its gate blocks along the last axis: a ``recurrent`` kernel (in, G·H)
    or recurrent kernel (H, G·H), or a ``recurrent_bias`` (G·H,) or (2, G·H); an ``embedding``
    table (rows, d_model); an attention projection's ``attention_in`` kernel (d_model, heads,
    head_dim), its ``attention_bias`` (heads, head_dim), or the output projection's
    ``attention_out`` kernel (heads, head_dim, d_model).
    ``flattened_from`` is the (h, w, c) feature map a Dense kernel's rows were flattened from;
    ``reshaped_to`` the (h, w, c) feature map a Dense kernel's columns (or its bias) are reshaped to.
    ``zero_gradient`` marks a tensor the loss cannot depend on (its gradient is float rounding only):
    an attention key bias adds q·b to every score of query q alike, which the softmax cancels; a
    bias right before a BatchNorm that normalises with the batch's statistics shifts the batch's
    mean by itself, which the BatchNorm subtracts.
    ``gates`` names a recurrent tensor's gate blocks, in their canonical order (a GRU's r, z, n)."""

    shape: tuple[int, ...]
    trainable: bool
    initializer: str
    fan_in: int
    fan_out: int
    layout: str = "vector"
    flattened_from: tuple[int, int, int] | None = None
    reshaped_to: tuple[int, int, int] | None = None
    zero_gradient: bool = False
    gates: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def is_recurrent(self) -> bool:
        """Whether this is a recurrent layer's kernel, recurrent kernel or bias (gate blocks)."""
        return self.layout in ("recurrent", "recurrent_bias")


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    non_trainable: int

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def dense_name(index: int) -> str:
    """Canonical name of the ``index``-th Dense layer (0 = first after the input)."""
    return f"dense_{index}"


def param_specs(spec: ModelSpec, *, unfrozen: bool = False) -> dict[str, ParamInfo]:
    """Every canonical tensor of ``spec``, in a fixed order: ``name -> ParamInfo``; the tensors of
    frozen layers are not trainable (unless ``unfrozen``, which ignores ``spec.frozen``)."""
    infos: dict[str, ParamInfo] = {}
    match spec:
        case MLPSpec():
            _add_mlp(infos, spec)
        case CNNSpec():
            shapes = spec.shapes()
            for name, layer, shape in zip(cnn_layer_names(spec), spec.layers, shapes):
                if name is not None:
                    _add_layer(infos, spec, name, layer, shape)
            _mark_reshapes(infos, spec, shapes)
            _mark_biases_before_batchnorm(infos, spec)
        case ResNetSpec():
            block_inputs = spec.shapes()
            _add_layer(infos, spec, "stem/conv", spec.stem_layers[0], block_inputs["stem"])
            _add_layer(infos, spec, "stem/bn", spec.batchnorm, (spec.widths[0],))
            for block in spec.blocks():
                shape = block_inputs[block.name]
                for letter, (conv, conv_input) in _zip_dicts(block.path, block.path_inputs(shape)):
                    _add_layer(infos, spec, f"{block.name}/conv_{letter}", conv, conv_input)
                    _add_layer(infos, spec, f"{block.name}/bn_{letter}", spec.batchnorm, (conv.filters,))
                if block.has_shortcut_conv:
                    _add_layer(infos, spec, f"{block.name}/shortcut_conv", block.shortcut_conv, shape)
                    _add_layer(infos, spec, f"{block.name}/shortcut_bn", spec.batchnorm, (block.out_channels,))
            _add_layer(infos, spec, "head", Dense(spec.num_classes), (spec.head_features,))
        case RNNSpec():
            for depth in range(spec.num_layers):
                for name in rnn_layer_names(spec, depth):
                    _add_recurrent(infos, spec, name, spec.input_size if depth == 0 else spec.features)
            if spec.head == "attention":
                width = spec.features
                if spec.attention == "additive":
                    _add_dense(infos, spec, "attention", spec.features, spec.attention_units, True, None)
                    width = spec.attention_units
                _add_dense(infos, spec, "attention_score", width, 1, False, None)
            _add_dense(infos, spec, dense_name(0), spec.features, spec.output_size, True, None)
        case TransformerSpec():
            _add_transformer(infos, spec)
        case VAESpec() | GANSpec() | ConvGANSpec():
            for part, network in model_parts(spec).items():
                infos |= {f"{part}/{name}": info for name, info in param_specs(network).items()}
        case _:
            raise ParamError(f"no canonical parameters defined for spec type {type(spec).__name__}")
    if spec.frozen and not unfrozen:  # frozen layers' tensors are state, not trained
        layers = list(dict.fromkeys(name.rsplit("/", 1)[0] for name in infos))
        for entry in spec.frozen:
            if not any(is_within(layer, entry) for layer in layers):
                raise SpecError("frozen", entry, f"a canonical layer name or prefix of {spec.name}: {layers}")
        infos = {
            name: replace(info, trainable=False) if is_frozen(spec, name.rsplit("/", 1)[0]) else info
            for name, info in infos.items()
        }
    return infos


def model_parts(spec: VAESpec | GANSpec | ConvGANSpec) -> dict[str, MLPSpec | CNNSpec]:
    """The networks of a two-part model by the prefix of their canonical names: a VAE's ``encoder``
    and ``decoder`` (``encoder/dense_1/kernel`` is (hidden, 2·latent), its columns the mean's then
    the log-variance's), a GAN's ``generator`` and ``discriminator`` (MLPs, or CNNs for a
    :class:`spec.models.ConvGANSpec`)."""
    if isinstance(spec, VAESpec):
        return {"encoder": spec.encoder, "decoder": spec.decoder}
    return {"generator": spec.generator, "discriminator": spec.discriminator}


# The network each GAN loss trains; the other one is held fixed for that step.
GAN_LOSS_TRAINS = {"gan_discriminator": "discriminator", "gan_generator": "generator"}


def optimizer_groups(spec: ModelSpec) -> dict[str, list[str]] | None:
    """For a model trained by one optimizer per part (a GAN: ``generator``, ``discriminator``),
    each part's trainable tensors; ``None`` for a model with one optimizer over all of them."""
    if not isinstance(spec, GAN_SPECS):
        return None
    names = trainable_names(spec)
    return {part: [n for n in names if n.startswith(f"{part}/")] for part in model_parts(spec)}


def group_names(spec: ModelSpec, part: str | None) -> list[str] | None:
    """The canonical names the optimizer of ``part`` (a GAN's network) updates; ``None`` for the
    one optimizer of the whole model (``part`` ``None``)."""
    if part is None:
        return None
    groups = optimizer_groups(spec) or {}
    if part not in groups:
        raise SpecError("part", part, f"an optimizer group of {spec.name!r}: {list(groups)}")
    return groups[part]


def group_of(spec: ModelSpec, names: Collection[str]) -> str:
    """The optimizer group whose tensors ``names`` are (as gradients for one step of it are)."""
    groups = optimizer_groups(spec) or {}
    for part, members in groups.items():
        if set(names) == set(members):
            return part
    raise ParamError(f"gradients for {sorted(names)} are not those of one of {spec.name!r}'s parts {list(groups)}")


def trained_names(spec: ModelSpec, loss: str) -> list[str]:
    """The canonical tensors a training step with ``loss`` updates (and has gradients for): a GAN
    loss's own network's, every trainable tensor otherwise."""
    groups = optimizer_groups(spec)
    return groups[GAN_LOSS_TRAINS[loss]] if groups and loss in GAN_LOSS_TRAINS else trainable_names(spec)


def rnn_layer_names(spec: RNNSpec, layer: int) -> list[str]:
    """The canonical names of recurrent layer ``layer``: one per direction."""
    if spec.bidirectional:
        return [f"rnn_{layer}/{direction}" for direction in spec.directions]
    return [f"rnn_{layer}"]


def rnn_layer_position(layer: str) -> tuple[int, str]:
    """The stack index and direction of a canonical recurrent layer: ``rnn_1/backward`` is
    (1, "backward"); a unidirectional ``rnn_0`` is (0, "forward")."""
    index, _, direction = layer.removeprefix("rnn_").partition("/")
    return int(index), direction or "forward"


def _add_recurrent(infos: dict[str, ParamInfo], spec: RNNSpec, name: str, fan_in: int) -> None:
    """The tensors of one recurrent layer (one direction) reading ``fan_in`` features. Keras's
    initializers see the whole (fan_in, G·H) kernel; torch's draw every tensor U(±1/sqrt(H))."""
    hidden, width = spec.hidden_size, len(spec.gates) * spec.hidden_size

    def fans(initializer: str, rows: int) -> tuple[int, int]:
        return (hidden, width) if initializer == "torch_default" else (rows, width)

    gates = spec.gates
    infos[f"{name}/kernel"] = ParamInfo(
        (fan_in, width), True, spec.kernel_initializer, *fans(spec.kernel_initializer, fan_in), "recurrent", gates=gates
    )
    infos[f"{name}/recurrent_kernel"] = ParamInfo(
        (hidden, width), True, spec.recurrent_initializer, *fans(spec.recurrent_initializer, hidden), "recurrent",
        gates=gates,
    )  # fmt: skip
    bias_shape = (2, width) if spec.has_recurrent_bias else (width,)
    infos[f"{name}/bias"] = ParamInfo(
        bias_shape, True, spec.bias_initializer, *fans(spec.bias_initializer, hidden), "recurrent_bias", gates=gates
    )


ATTENTION_PROJECTIONS = ("query", "key", "value")
# A LayerNorm's tensors: (name, initial value).
LAYER_NORM_TENSORS = (("gamma", "ones"), ("beta", "zeros"))


def encoder_layer_name(index: int) -> str:
    return f"encoder_{index}"


def _add_transformer(infos: dict[str, ParamInfo], spec: TransformerSpec) -> None:
    d, heads, head_dim, inner = spec.d_model, spec.num_heads, spec.head_dim, spec.attention_width
    kernel, bias = spec.kernel_initializer, spec.bias_initializer
    infos["embedding/embeddings"] = ParamInfo((spec.vocab_size, d), True, spec.embedding_initializer, 1, d, "embedding")
    if spec.positional == "learned":
        infos["position/embeddings"] = ParamInfo((spec.seq_len, d), True, spec.embedding_initializer, 1, d, "embedding")

    def add_norm(layer: str) -> None:
        for variable, initializer in LAYER_NORM_TENSORS:
            infos[f"{layer}/{variable}"] = ParamInfo((d,), True, initializer, d, d)

    for index in range(spec.num_layers):
        layer = encoder_layer_name(index)
        for projection in ATTENTION_PROJECTIONS:  # fans of the (d_model, heads·head_dim) matrix each one is
            name = f"{layer}/attention/{projection}"
            infos[f"{name}/kernel"] = ParamInfo((d, heads, head_dim), True, kernel, d, inner, "attention_in")
            infos[f"{name}/bias"] = ParamInfo(
                (heads, head_dim), True, bias, d, inner, "attention_bias", zero_gradient=projection == "key"
            )
        output = f"{layer}/attention/output"
        infos[f"{output}/kernel"] = ParamInfo((heads, head_dim, d), True, kernel, inner, d, "attention_out")
        infos[f"{output}/bias"] = ParamInfo((d,), True, bias, d, d)
        add_norm(f"{layer}/attention_norm")
        _add_dense(infos, spec, f"{layer}/ffn_0", d, spec.ff_size, True, None)
        _add_dense(infos, spec, f"{layer}/ffn_1", spec.ff_size, d, True, None)
        add_norm(f"{layer}/ffn_norm")
    if spec.norm == "pre":
        add_norm("final_norm")
    _add_dense(infos, spec, dense_name(0), d, spec.output_size, True, None)


def sinusoidal_positions(seq_len: int, d_model: int) -> np.ndarray:
    """The fixed positional table (:data:`spec.models.POSITIONAL_ENCODINGS`), float64 (seq_len, d_model):
    a constant every backend adds, not a parameter."""
    position = np.arange(seq_len)[:, None]
    frequency = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)
    table = np.empty((seq_len, d_model))
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency)
    return table


def _zip_dicts(first: Mapping, second: Mapping) -> list:
    """The entries of two mappings with the same keys, side by side: ``[(key, (first[key], second[key]))]``."""
    return [(key, (value, second[key])) for key, value in first.items()]


def layer_names(spec: ModelSpec) -> list[str]:
    """The canonical names of the layers that hold tensors, in order."""
    return list(dict.fromkeys(name.rsplit("/", 1)[0] for name in param_specs(spec, unfrozen=True)))


# The canonical name stem of each kind of layer with tensors (numbered per kind: conv_0, conv_1 …).
LAYER_KINDS = {Conv2D: "conv", ConvTranspose2D: "conv_transpose", BatchNorm: "batchnorm", Dense: "dense"}


def cnn_layer_names(spec: CNNSpec) -> list[str | None]:
    """The canonical name of each layer of a sequential CNN (``None`` for layers without tensors)."""
    counts: dict[str, int] = {}
    names: list[str | None] = []
    for layer in spec.layers:
        kind = LAYER_KINDS.get(type(layer))
        if kind is None:
            names.append(None)
            continue
        names.append(f"{kind}_{counts.get(kind, 0)}")
        counts[kind] = counts.get(kind, 0) + 1
    return names


def _add_mlp(infos: dict[str, ParamInfo], spec: MLPSpec) -> None:
    """An MLP's Dense layers, named ``dense_<i>``."""
    for i, (fan_in, fan_out) in enumerate(pairwise(spec.layer_sizes)):
        _add_dense(infos, spec, dense_name(i), fan_in, fan_out, spec.use_bias, None)


def _add_dense(
    infos: dict[str, ParamInfo],
    spec: ModelSpec,
    layer: str,
    fan_in: int,
    fan_out: int,
    use_bias: bool,
    flattened_from: tuple[int, int, int] | None,
) -> None:
    infos[f"{layer}/kernel"] = ParamInfo(
        (fan_in, fan_out), True, spec.kernel_initializer, fan_in, fan_out, "dense", flattened_from
    )
    if use_bias:
        infos[f"{layer}/bias"] = ParamInfo((fan_out,), True, spec.bias_initializer, fan_in, fan_out)


def _add_layer(infos: dict[str, ParamInfo], spec: ModelSpec, name: str, layer: Layer, shape: tuple[int, ...]) -> None:
    """The tensors of one layer whose input has ``shape`` (without the batch axis)."""
    channels = shape[-1]
    match layer:
        case Conv2D():
            kh, kw = layer.kernel_size
            fan_in, fan_out = kh * kw * channels, kh * kw * layer.filters
            kernel_shape = (kh, kw, channels, layer.filters)
            infos[f"{name}/kernel"] = ParamInfo(kernel_shape, True, spec.kernel_initializer, fan_in, fan_out, "conv")
            if layer.use_bias:
                infos[f"{name}/bias"] = ParamInfo((layer.filters,), True, spec.bias_initializer, fan_in, fan_out)
        case ConvTranspose2D():
            kh, kw = layer.kernel_size
            fan_in, fan_out = kh * kw * layer.filters, kh * kw * channels
            kernel_shape = (kh, kw, channels, layer.filters)
            infos[f"{name}/kernel"] = ParamInfo(
                kernel_shape, True, spec.kernel_initializer, fan_in, fan_out, "conv_transpose"
            )
            if layer.use_bias:
                infos[f"{name}/bias"] = ParamInfo((layer.filters,), True, spec.bias_initializer, fan_in, fan_out)
        case BatchNorm():
            for variable, trainable, initializer in BATCHNORM_TENSORS:
                infos[f"{name}/{variable}"] = ParamInfo((channels,), trainable, initializer, channels, channels)
        case Dense():
            _add_dense(infos, spec, name, channels, layer.units, layer.use_bias, None)


# A BatchNorm layer's tensors: (name, trainable, initial value).
BATCHNORM_TENSORS = (
    ("gamma", True, "ones"),
    ("beta", True, "zeros"),
    ("moving_mean", False, "zeros"),
    ("moving_variance", False, "ones"),
)


def _mark_biases_before_batchnorm(infos: dict[str, ParamInfo], spec: CNNSpec) -> None:
    """Mark ``zero_gradient`` the bias of a layer whose output goes straight into a BatchNorm that
    normalises with the batch's statistics in training (not a frozen one in inference mode):
    ``(x + b) − mean(x + b) = x − mean(x)``. Users' models have them (torch's ``Conv2d`` has a bias
    by default, and ported models keep it)."""
    names = cnn_layer_names(spec)
    for name, following, norm in zip(names, spec.layers[1:], names[1:]):
        if not isinstance(following, BatchNorm) or name is None or f"{name}/bias" not in infos:
            continue
        if norm is not None and spec.frozen_batchnorm == "inference" and is_frozen(spec, norm):
            continue  # normalises with its running statistics: the bias moves the output
        infos[f"{name}/bias"] = replace(infos[f"{name}/bias"], zero_gradient=True)


def _mark_reshapes(infos: dict[str, ParamInfo], spec: CNNSpec, shapes: list[tuple[int, ...]]) -> None:
    """Record on the Dense kernel right after a Flatten the (h, w, c) its rows come from, and on the
    tensors from the Dense layer before a Reshape up to it (kernel columns, bias, a BatchNorm's
    vectors) the (h, w, c) their features are reshaped to."""
    names = cnn_layer_names(spec)
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, Flatten):
            for name, later in zip(names[i + 1 :], spec.layers[i + 1 :]):
                if isinstance(later, Reshape):  # flattened and reshaped before any Dense
                    break
                if isinstance(later, Dense):
                    key = f"{name}/kernel"
                    h, w, c = shapes[i]  # a Flatten reads a feature map
                    infos[key] = replace(infos[key], flattened_from=(h, w, c))
                    break
        if isinstance(layer, Reshape):  # back to the Dense layer feeding it: every tensor on the way
            for name, earlier in reversed(list(zip(names[:i], spec.layers[:i]))):
                for key in [k for k in infos if name is not None and k.startswith(f"{name}/")]:
                    infos[key] = replace(infos[key], reshaped_to=layer.target_shape)
                if isinstance(earlier, (Dense, Flatten)):
                    break


def trainable_names(spec: ModelSpec) -> list[str]:
    """The canonical names of the trainable tensors (those that have gradients), in order."""
    return [name for name, info in param_specs(spec).items() if info.trainable]


def count_params(spec: ModelSpec) -> ParamCount:
    """Trainable and non-trainable scalar counts, derived from the spec alone."""
    infos = param_specs(spec).values()
    return ParamCount(
        trainable=sum(p.size for p in infos if p.trainable),
        non_trainable=sum(p.size for p in infos if not p.trainable),
    )


def init_params(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Deterministic canonical parameters for ``spec``: the same seed gives the same arrays anywhere.

    Each tensor draws from its own stream keyed by (seed, position), so adding a layer does not change
    the values of the layers before it.
    """
    params = {}
    for position, (name, info) in enumerate(param_specs(spec).items()):
        rng = np.random.default_rng([seed, position])
        params[name] = sample_initializer(info, rng).astype(CANONICAL_DTYPE)
    return params


_TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]


def sample_initializer(info: ParamInfo, rng: np.random.Generator) -> np.ndarray:
    """Draw one tensor from its initializer (definitions in :mod:`spec.models`), in float64."""
    fan_in, fan_out, shape = info.fan_in, info.fan_out, info.shape
    match info.initializer:
        case "zeros":
            return np.zeros(shape)
        case "ones":
            return np.ones(shape)
        case "glorot_uniform":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, shape)
        case "glorot_normal":
            return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
        case "he_uniform":
            limit = math.sqrt(6.0 / fan_in)
            return rng.uniform(-limit, limit, shape)
        case "he_normal":
            return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        case "lecun_normal":
            return _truncated_standard_normal(rng, shape) * (math.sqrt(1.0 / fan_in) / _TRUNCATED_NORMAL_STD)
        case "torch_default":
            limit = 1.0 / math.sqrt(fan_in)
            return rng.uniform(-limit, limit, shape)
        case "orthogonal":
            return _orthogonal(rng, shape)
        case "normal":
            return rng.standard_normal(shape)
        case "uniform":
            return rng.uniform(-0.05, 0.05, shape)
    raise ParamError(f"unknown initializer {info.initializer!r}")


def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A matrix with orthonormal rows (or columns, whichever are fewer), the whole tensor seen as
    (prod(shape[:-1]), shape[-1]) — Keras's and Flax's construction: QR of a Gaussian matrix, signs
    fixed by R's diagonal so the distribution is uniform (Haar)."""
    rows, cols = math.prod(shape[:-1]), shape[-1]
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))
    return (q.T if rows < cols else q).reshape(shape)


def _truncated_standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, 1) restricted to [-2, 2], by redrawing the samples outside."""
    out = rng.standard_normal(shape)
    outside = np.abs(out) > 2
    while outside.any():
        out[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(out) > 2
    return out


def check_params(
    spec: ModelSpec,
    params: Mapping[str, np.ndarray],
    *,
    source: str = "parameters",
    trainable_only: bool = False,
    names: Collection[str] | None = None,
    dtype: VariableDtype = "float32",
) -> dict[str, np.ndarray]:
    """Validate ``params`` against ``spec`` and return them as arrays of ``dtype`` (the canonical
    float32, or a float64 model's precision) in canonical order; ``trainable_only`` expects just the
    trainable tensors (gradients, say), ``names`` just those.

    A missing, unexpected, mis-shaped, non-numeric or non-finite tensor raises :class:`ParamError`
    naming it; ``source`` says where the parameters came from (e.g. a file name).
    """
    expected = {
        n: info
        for n, info in param_specs(spec).items()
        if (info.trainable or not trainable_only) and (names is None or n in names)
    }
    missing, unexpected = mismatched_names(expected, params)
    if missing or unexpected:
        raise ParamError(
            f"{source}: names do not match spec {spec.name!r}: missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}; expected names: {list(expected)}"
        )
    checked = {}
    for name, info in expected.items():
        value = np.asarray(params[name])
        if value.shape != info.shape:
            raise ParamError(
                f"{source}: parameter {name!r} has shape {value.shape}, spec {spec.name!r} needs {info.shape}"
            )
        if not np.issubdtype(value.dtype, np.floating):
            raise ParamError(f"{source}: parameter {name!r} has dtype {value.dtype}, expected a float dtype")
        if not np.all(np.isfinite(value)):
            raise ParamError(f"{source}: parameter {name!r} contains NaN or infinity")
        checked[name] = value.astype(dtype)
    return checked
