"""The judge: a NumPy float64 forward pass, losses and finite-difference gradients for every spec.

Written for clarity, not speed: each function is the textbook definition, so a reader can check it
against the literature. Backends are compared to these values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from spec.errors import SpecError
from spec.inputs import check_inputs, check_targets
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
    resolve_padding,
)
from spec.losses import check_loss, check_model_loss
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
)
from spec.optimizers import OptimizerSpec
from spec.params import (
    check_params,
    cnn_layer_names,
    dense_name,
    encoder_layer_name,
    param_specs,
    rnn_layer_names,
    sinusoidal_positions,
    trainable_names,
    trained_names,
)
from spec.schedules import ScheduleSpec

_erf = np.frompyfunc(math.erf, 1, 1)


# --- kinks: where the judged function is not differentiable ------------------------------------


@dataclass(frozen=True)
class Kink:
    """The input of one piecewise op of a pass that lies closest to a kink: ``margin`` is its distance
    from the kink — a ReLU's input from 0, the gap between a max-pool window's two largest — over
    the rms of the op's whole input, the scale at which float32 rounds it."""

    op: str  # the op and its place among the pass's piecewise ops: "relu #3"
    margin: float


_recorded: ContextVar[list[Kink] | None] = ContextVar("kinks", default=None)


def _note_kink(op: str, distances: np.ndarray, x: np.ndarray) -> None:
    """Record the smallest of ``distances`` from ``op``'s kinks, when a :func:`recording_kinks` is on."""
    found = _recorded.get()
    if found is None or not distances.size:
        return
    rms = float(np.sqrt(np.mean(np.square(x[np.isfinite(x)]))))
    # an input that is all zeros sits on its kinks, where the frameworks' one-sided derivatives and
    # the judge's central differences disagree whatever the rounding
    found.append(Kink(f"{op} #{len(found) + 1}", float(distances.min()) / rms if rms else 0.0))


@contextmanager
def recording_kinks() -> Iterator[list[Kink]]:
    """Collects, while open, a :class:`Kink` for each piecewise op that a judge's pass runs."""
    found: list[Kink] = []
    token = _recorded.set(found)
    try:
        yield found
    finally:
        _recorded.reset(token)


# --- magnitude: the absolute terms summed into the output ------------------------------------


@dataclass
class _Product:
    """The last product a judge's pass computed, and the sum of its terms' absolute values."""

    out: np.ndarray | None = None
    magnitude: np.ndarray | None = None


_last_product: ContextVar[_Product | None] = ContextVar("last_product", default=None)


def affine(
    linear: Callable[[np.ndarray, np.ndarray], np.ndarray], h: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None
) -> np.ndarray:
    """``linear(h, kernel)`` plus ``bias``: a dense layer's, a convolution's or a head's product.
    While :func:`output_magnitude` runs, it also records ``linear(|h|, |kernel|) + |bias|``."""
    out = linear(h, kernel)
    if bias is not None:
        out = out + bias
    record = _last_product.get()
    if record is not None:
        magnitude = linear(np.abs(h), np.abs(kernel))
        record.out, record.magnitude = out, magnitude if bias is None else magnitude + np.abs(bias)
    return out


def output_magnitude(
    spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, *, training: bool = False
) -> np.ndarray:
    """Σ|w·h| + |b| for each output of :func:`logits`: the absolute values of the terms the last
    product sums. Rounding errors scale with it, not with the output, which cancellation can bring
    near 0 (a one-unit regression head). Every spec ends in a product (a dense layer or a convolution)."""
    record = _Product()
    token = _last_product.set(record)
    try:
        out = logits(spec, params, x, training=training)
    finally:
        _last_product.reset(token)
    if record.out is not out or record.magnitude is None:
        raise RuntimeError(f"{spec.name}: the judge's output is not the last product it computed")
    return record.magnitude


# --- layer outputs: the pass's values at named points -----------------------------------------

_layer_outputs: ContextVar[dict[str, np.ndarray] | None] = ContextVar("layer_outputs", default=None)


def _note(point: str, value: np.ndarray) -> np.ndarray:
    """``value``, recorded as ``point``'s output when :func:`layer_outputs` runs."""
    found = _layer_outputs.get()
    if found is not None:
        found[point] = value
    return value


def layer_outputs(
    spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, *, training: bool = False
) -> dict[str, np.ndarray]:
    """The pass's output of each canonical layer with tensors and of each point of
    :func:`spec.layer_paths.observed_points` (a residual block, a recurrent layer, an encoder layer),
    by name: feature maps NHWC, sequences (batch, time, features), a recurrent layer's directions
    joined as the next layer reads them."""
    found: dict[str, np.ndarray] = {}
    token = _layer_outputs.set(found)
    try:
        logits(spec, params, x, training=training)
    finally:
        _layer_outputs.reset(token)
    return found


def last_states(spec: RNNSpec, outputs: np.ndarray) -> np.ndarray:
    """What a "last" head reads of the top layer's ``outputs``: the forward direction's state at
    step T−1, joined with the backward one's at step 0, where it ends."""
    hidden = spec.hidden_size
    last = [outputs[:, -1, :hidden]] + ([outputs[:, 0, hidden:]] if spec.bidirectional else [])
    return np.concatenate(last, axis=-1)


def relu(x: np.ndarray) -> np.ndarray:
    _note_kink("relu", np.abs(x), x)
    return np.maximum(x, 0.0)


def activation(x: np.ndarray, act: Activation) -> np.ndarray:
    """Apply a hidden-layer activation in float64."""
    match act.kind:
        case "relu":
            return relu(x)
        case "tanh":
            return np.tanh(x)
        case "sigmoid":
            return sigmoid(x)
        case "leaky_relu":
            _note_kink("leaky_relu", np.abs(x), x)  # its slope jumps at 0
            return np.where(x >= 0, x, act.negative_slope * x)
        case "elu":
            if act.alpha != 1.0:  # the slope jumps at 0 but for α = 1
                _note_kink("elu", np.abs(x), x)
            return np.where(x > 0, x, act.alpha * np.expm1(np.minimum(x, 0.0)))
        case "gelu" if act.approximate == "exact":
            # frompyfunc's stub also allows a scalar (for a 0-d input); on an array it returns an array
            return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))  # type: ignore[union-attr]
        case "gelu":
            return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
        case "linear":
            return x
    raise SpecError("activation", act.kind, "a known activation")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic sigmoid, stable for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def output_activation(logits: np.ndarray, kind: str) -> np.ndarray:
    """Apply the model's output activation to its logits."""
    match kind:
        case "softmax":
            return np.exp(log_softmax(logits))
        case "sigmoid":
            return sigmoid(logits)
        case "linear":
            return logits
    raise SpecError("output_activation", kind, "softmax, sigmoid, linear")


def _as_float64_params(spec: ModelSpec, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    check_params(spec, params)
    return {name: np.asarray(value, dtype=np.float64) for name, value in params.items()}


def logits(spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, *, training: bool = False) -> np.ndarray:
    """The model's pre-activation output in float64. ``training`` switches BatchNorm to batch
    statistics; the judge has no dropout (it draws no random masks), so it matches a backend in
    evaluation mode, or in training mode at dropout rate 0."""
    return logits_and_state(spec, params, x, training=training)[0]


def logits_and_state(
    spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, *, training: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The logits and the running statistics after the pass: in training mode each BatchNorm's
    updated by this batch (:class:`spec.layers.BatchNorm`) — except in frozen layers whose BatchNorm
    runs in inference mode (``spec.frozen_batchnorm``) — else unchanged."""
    p = _as_float64_params(spec, params)
    h = _check_input(spec, x)
    # the running statistics: every BatchNorm's, frozen layers' too
    infos = param_specs(spec, unfrozen=True)
    state = {name: value for name, value in p.items() if not infos[name].trainable}

    def batch_statistics(layer: str) -> bool:
        """Whether BatchNorm ``layer`` normalises with (and updates from) the batch's statistics."""
        return training and not (spec.frozen_batchnorm == "inference" and is_frozen(spec, layer))

    match spec:
        case MLPSpec():
            h = _mlp(spec, p, h)
        case CNNSpec():
            h = _cnn(spec, p, h, batch_statistics=batch_statistics, state=state)
        case ResNetSpec():
            h = _resnet(spec, p, h, batch_statistics, state)
        case RNNSpec():
            h = _rnn(spec, p, h)
        case TransformerSpec():
            h = _transformer(spec, p, h)
        case VAESpec():
            h = _vae(spec, p, h)[0]
        case GANSpec() | ConvGANSpec():
            h = _network(spec.generator, p, h, "generator/")
        case _:
            raise SpecError("spec", type(spec).__name__, "a spec with a reference forward pass")
    return h, state


def _mlp(spec: MLPSpec, p: Mapping[str, np.ndarray], h: np.ndarray, prefix: str = "") -> np.ndarray:
    """An MLP's logits; its tensors are named ``{prefix}dense_<i>/…``."""
    last = len(spec.hidden_sizes)
    for i in range(last + 1):
        name = f"{prefix}{dense_name(i)}"
        h = affine(np.matmul, h, p[f"{name}/kernel"], p[f"{name}/bias"] if spec.use_bias else None)
        if i < last:
            h = activation(h, spec.activations[i])
    return h


def _cnn(
    spec: CNNSpec,
    p: Mapping[str, np.ndarray],
    h: np.ndarray,
    prefix: str = "",
    *,
    batch_statistics: Callable[[str], bool] = lambda layer: False,
    state: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """A sequential CNN's logits; its tensors are named ``{prefix}conv_0/…``. A BatchNorm layer for
    which ``batch_statistics(name)`` holds normalises with the batch's and updates ``state``."""
    state = {} if state is None else state
    for name, layer in zip(cnn_layer_names(spec), spec.layers):
        in_batch = name is not None and batch_statistics(name)
        h = apply_layer(layer, name and f"{prefix}{name}", p, h, in_batch, state)
    return h


def _network(spec: MLPSpec | CNNSpec, p: Mapping[str, np.ndarray], h: np.ndarray, prefix: str) -> np.ndarray:
    """The logits of one network of a GAN, an MLP or a CNN (without BatchNorm: see
    :class:`spec.models.ConvGANSpec`), whose tensors are named ``{prefix}…``."""
    return _mlp(spec, p, h, prefix) if isinstance(spec, MLPSpec) else _cnn(spec, p, h, prefix)


def _vae(spec: VAESpec, p: Mapping[str, np.ndarray], inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decoder's logits, and the encoder's mean and log-variance, for images with their ε."""
    images, noise = inputs[:, : spec.input_size], inputs[:, spec.input_size :]
    encoded = _mlp(spec.encoder, p, images, "encoder/")
    mean, log_variance = encoded[:, : spec.latent_size], encoded[:, spec.latent_size :]
    z = mean + np.exp(0.5 * log_variance) * noise
    return _mlp(spec.decoder, p, z, "decoder/"), mean, log_variance


def vae_outputs(
    spec: VAESpec, params: Mapping[str, np.ndarray], inputs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A VAE's reconstruction logits, mean and log-variance in float64, for ``inputs`` = [images | ε]."""
    return _vae(spec, _as_float64_params(spec, params), _check_input(spec, inputs))


def kl_divergence(mean: np.ndarray, log_variance: np.ndarray) -> np.ndarray:
    """KL( N(mean, exp(log_variance)) || N(0, I) ) of each example, in float64."""
    mean, log_variance = np.asarray(mean, np.float64), np.asarray(log_variance, np.float64)
    return -0.5 * np.sum(1.0 + log_variance - mean**2 - np.exp(log_variance), axis=-1)


def negative_elbo(
    spec: VAESpec, logits: np.ndarray, mean: np.ndarray, log_variance: np.ndarray, images: np.ndarray
) -> float:
    """The VAE's loss (definition in :mod:`spec.losses`) from its outputs, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    t = _check_targets(images, z.shape)
    if spec.reconstruction == "binary_crossentropy":
        per_pixel = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    else:
        per_pixel = (sigmoid(z) - t) ** 2
    return float(np.mean(per_pixel.sum(axis=-1) + spec.kl_weight * kl_divergence(mean, log_variance)))


def discriminator_logits(
    spec: GANSpec | ConvGANSpec, params: Mapping[str, np.ndarray], samples: np.ndarray
) -> np.ndarray:
    """A GAN discriminator's logit for each sample (real or generated), in float64."""
    p = _as_float64_params(spec, params)
    return _network(spec.discriminator, p, np.asarray(samples, np.float64), "discriminator/")


def gan_loss(
    spec: GANSpec | ConvGANSpec, params: Mapping[str, np.ndarray], z: np.ndarray, real: np.ndarray, loss_name: str
) -> float:
    """A GAN loss (definitions in :mod:`spec.losses`) for latents ``z`` and the real batch, in float64."""
    check_model_loss(spec, loss_name)
    p = _as_float64_params(spec, params)
    real = _check_targets(real, (len(real), *spec.data_shape))
    fake = output_activation(_network(spec.generator, p, _check_input(spec, z), "generator/"), spec.generator_output)
    fake_logits = _network(spec.discriminator, p, fake, "discriminator/")
    softplus = partial(np.logaddexp, 0.0)  # log(1 + e^x) without overflow
    if loss_name == "gan_generator":
        return float(softplus(-fake_logits).mean())  # −log D(G(z))
    real_logits = _network(spec.discriminator, p, real, "discriminator/")
    return float(softplus(-real_logits).mean() + softplus(fake_logits).mean())


def _resnet(
    spec: ResNetSpec,
    p: dict[str, np.ndarray],
    h: np.ndarray,
    batch_statistics: Callable[[str], bool],
    state: dict[str, np.ndarray],
) -> np.ndarray:
    def bn(name: str, x: np.ndarray) -> np.ndarray:
        return apply_layer(spec.batchnorm, name, p, x, batch_statistics(name), state)

    def conv(layer: Conv2D, name: str, x: np.ndarray) -> np.ndarray:
        return apply_layer(layer, name, p, x, False, state)

    stem_layers: tuple[Layer, ...] = spec.stem_layers  # each applied alike, whatever its kind
    for layer, name in zip(stem_layers, ("stem/conv", "stem/bn", None, None)):
        h = apply_layer(layer, name, p, h, name == "stem/bn" and batch_statistics(name), state)
    for block in spec.blocks():
        b, out = block.name, h
        for i, (letter, layer) in enumerate(block.path.items()):
            out = bn(f"{b}/bn_{letter}", conv(layer, f"{b}/conv_{letter}", out))
            out = relu(out) if i < len(block.path) - 1 else out
        if block.has_shortcut_conv:
            h = bn(f"{b}/shortcut_bn", conv(block.shortcut_conv, f"{b}/shortcut_conv", h))
        h = _note(b, relu(out + h))
    return apply_layer(Dense(spec.num_classes), "head", p, h.mean(axis=(1, 2)), False, state)


def _rnn(spec: RNNSpec, p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Stacked (bidirectional) recurrent layers, then the head on the last states or on every step."""
    for layer in range(spec.num_layers):
        names = rnn_layer_names(spec, layer)
        directions = [
            recurrent_layer(spec, p, name, x, reverse=direction == "backward")
            for name, direction in zip(names, spec.directions)
        ]
        x = _note(f"rnn_{layer}", np.concatenate(directions, axis=-1))
    if spec.head == "last":
        x = last_states(spec, x)
    if spec.head == "attention":
        x = attention_pooling(spec, p, x)
    return _note("dense_0", affine(np.matmul, x, p["dense_0/kernel"], p["dense_0/bias"]))


def attention_pooling(spec: RNNSpec, p: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    """Every step's output ``h`` (batch, time, features) weighted by the softmax over the steps of
    its score (:data:`spec.models.SEQUENCE_HEADS`), summed over the steps."""
    u = np.tanh(h @ p["attention/kernel"] + p["attention/bias"]) if spec.attention == "additive" else h
    scores = (u @ p["attention_score/kernel"])[..., 0]
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("bt,btf->bf", weights, h)


def padding_mask(spec: TransformerSpec, tokens: np.ndarray) -> np.ndarray:
    """True at the positions that are not padding (all of them when the spec has no pad token)."""
    return np.ones(tokens.shape, bool) if spec.pad_token is None else tokens != spec.pad_token


def _transformer(spec: TransformerSpec, p: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    """Embedding and positions, the encoder layers, pooling and the head (:class:`TransformerSpec`)."""
    mask = padding_mask(spec, tokens)
    scale = math.sqrt(spec.d_model) if spec.scale_embedding else 1.0
    h = _note("embedding", p["embedding/embeddings"][tokens]) * scale
    if spec.positional == "learned":
        h = h + p["position/embeddings"]
    else:
        h = h + sinusoidal_positions(spec.seq_len, spec.d_model)
    for index in range(spec.num_layers):
        h = _note(encoder_layer_name(index), encoder_layer(spec, p, encoder_layer_name(index), h, mask))
    if spec.norm == "pre":
        h = layer_norm(h, p, "final_norm", spec.layer_norm_epsilon)
    if spec.pooling == "mean":
        h = (h * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    elif spec.pooling == "first":
        h = h[:, 0]
    return _note("dense_0", affine(np.matmul, h, p["dense_0/kernel"], p["dense_0/bias"]))


def encoder_layer(
    spec: TransformerSpec, p: Mapping[str, np.ndarray], name: str, h: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """One encoder layer: self-attention and the FFN, each with its residual and LayerNorm."""
    eps = spec.layer_norm_epsilon

    def ffn(x: np.ndarray) -> np.ndarray:
        hidden = activation(x @ p[f"{name}/ffn_0/kernel"] + p[f"{name}/ffn_0/bias"], spec.activation)
        return hidden @ p[f"{name}/ffn_1/kernel"] + p[f"{name}/ffn_1/bias"]

    if spec.norm == "post":
        h = layer_norm(h + self_attention(p, f"{name}/attention", h, mask), p, f"{name}/attention_norm", eps)
        return layer_norm(h + ffn(h), p, f"{name}/ffn_norm", eps)
    h = h + self_attention(p, f"{name}/attention", layer_norm(h, p, f"{name}/attention_norm", eps), mask)
    return h + ffn(layer_norm(h, p, f"{name}/ffn_norm", eps))


def self_attention(p: Mapping[str, np.ndarray], name: str, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Multi-head scaled dot-product self-attention over ``x`` (batch, time, d_model); the keys where
    ``mask`` is False get no weight."""
    q, k, v = (
        np.einsum("btd,dnh->btnh", x, p[f"{name}/{proj}/kernel"]) + p[f"{name}/{proj}/bias"]
        for proj in ("query", "key", "value")
    )
    scores = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(q.shape[-1])
    scores = np.where(mask[:, None, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    heads = np.einsum("bnts,bsnh->btnh", weights, v)
    return np.einsum("btnh,nhd->btd", heads, p[f"{name}/output/kernel"]) + p[f"{name}/output/bias"]


def layer_norm(x: np.ndarray, p: Mapping[str, np.ndarray], name: str, epsilon: float) -> np.ndarray:
    """Normalise each position over its features (biased variance), then scale and shift."""
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return _note(name, (x - mean) / np.sqrt(variance + epsilon) * p[f"{name}/gamma"] + p[f"{name}/beta"])


def recurrent_layer(
    spec: RNNSpec, p: Mapping[str, np.ndarray], name: str, x: np.ndarray, *, reverse: bool
) -> np.ndarray:
    """One recurrent layer over ``x`` (batch, time, features) from a zero state; the output at each
    step, in time order even when ``reverse`` runs it from the last step to the first. The cell
    equations are at :data:`spec.models.RNN_CELLS`."""
    kernel, recurrent, bias = p[f"{name}/kernel"], p[f"{name}/recurrent_kernel"], p[f"{name}/bias"]
    bias, recurrent_bias = (bias[0], bias[1]) if spec.has_recurrent_bias else (bias, 0.0)
    hidden = spec.hidden_size
    h = np.zeros((len(x), hidden))
    c = np.zeros_like(h)
    outputs = np.empty((*x.shape[:2], hidden))
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in steps:
        from_input = x[:, t] @ kernel + bias
        match spec.cell:
            case "simple_rnn":
                h = np.tanh(from_input + h @ recurrent)
            case "lstm":
                i, f, g, o = np.split(from_input + h @ recurrent, 4, axis=-1)
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
            case "gru":
                x_r, x_z, x_n = np.split(from_input, 3, axis=-1)
                h_r, h_z, h_n = np.split(h @ recurrent + recurrent_bias, 3, axis=-1)
                r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
                if spec.gru_reset == "after":
                    n = np.tanh(x_n + r * h_n)
                else:
                    n = np.tanh(x_n + (r * h) @ recurrent[:, 2 * hidden :])
                h = (1 - z) * n + z * h
        outputs[:, t] = h
    return outputs


def apply_layer(
    layer: Layer,
    name: str | None,
    p: Mapping[str, np.ndarray],
    h: np.ndarray,
    training: bool,
    state: dict[str, np.ndarray],
) -> np.ndarray:
    """One layer in float64; ``name`` is its canonical name, ``state`` receives BatchNorm updates."""
    bias = p[f"{name}/bias"] if isinstance(layer, Conv2D | ConvTranspose2D | Dense) and layer.use_bias else None
    match layer:
        case Conv2D():
            pads = resolve_padding(layer.padding, h.shape[1:3], layer.kernel_size, layer.strides)
            out = affine(partial(conv2d, strides=layer.strides, pads=pads), h, p[f"{name}/kernel"], bias)
        case ConvTranspose2D():
            linear = partial(conv_transpose2d, strides=layer.strides, crops=layer.crops())
            out = affine(linear, h, p[f"{name}/kernel"], bias)
        case Pool2D():
            out = pool2d(h, layer)
        case BatchNorm():
            assert name is not None  # a layer with tensors has a canonical name (spec.params.cnn_layer_names)
            out = batchnorm(h, layer, p, name, training, state)
        case Act():
            out = activation(h, layer.activation)
        case Flatten():
            out = h.reshape(len(h), -1)  # NHWC order: rows of the next kernel are (h, w, c)
        case Reshape():
            out = h.reshape(len(h), *layer.target_shape)  # NHWC: the previous columns are (h, w, c)
        case GlobalAvgPool():
            out = h.mean(axis=(1, 2))
        case Dense():
            out = affine(np.matmul, h, p[f"{name}/kernel"], bias)
        case Dropout():
            out = h
        case _:
            raise SpecError("layer", type(layer).__name__, "a layer with a reference")
    return out if name is None else _note(name, out)


def conv2d(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], pads: Pads) -> np.ndarray:
    """Cross-correlation of NHWC ``x`` with a (kh, kw, in, out) kernel after zero ``pads``."""
    x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    kh, kw = kernel.shape[:2]
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, :: strides[0], :: strides[1]]  # n, h, w, c, kh, kw
    return np.tensordot(windows, kernel, axes=([3, 4, 5], [2, 0, 1]))


def conv_transpose2d(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], crops: Pads) -> np.ndarray:
    """Transposed convolution of NHWC ``x`` with a (kh, kw, in, out) kernel: each input pixel adds
    its channels times ``kernel[i, j]`` to the output pixel ``stride`` times its position plus
    (i, j); then ``crops`` come off the edges (:class:`spec.layers.ConvTranspose2D`)."""
    n, h, w, _ = x.shape
    kh, kw, _, out = kernel.shape
    sh, sw = strides
    full = np.zeros((n, (h - 1) * sh + kh, (w - 1) * sw + kw, out), dtype=np.result_type(x, kernel))
    for i in range(kh):
        for j in range(kw):
            full[:, i : i + (h - 1) * sh + 1 : sh, j : j + (w - 1) * sw + 1 : sw] += x @ kernel[i, j]
    (top, bottom), (left, right) = crops
    return full[:, top : full.shape[1] - bottom, left : full.shape[2] - right]


def pool2d(x: np.ndarray, layer: Pool2D) -> np.ndarray:
    """Max or average pooling of NHWC ``x`` (padding semantics in :class:`spec.layers.Pool2D`)."""
    pads = resolve_padding(layer.padding, x.shape[1:3], layer.pool_size, layer.strides)
    widths = ((0, 0), pads[0], pads[1], (0, 0))
    sh, sw = layer.strides

    def windows(a: np.ndarray) -> np.ndarray:
        return sliding_window_view(a, layer.pool_size, axis=(1, 2))[:, ::sh, ::sw]

    if layer.kind == "max":
        padded = windows(np.pad(x, widths, constant_values=-np.inf))
        top = padded.max(axis=(-2, -1))
        if _recorded.get() is not None:
            # the gap to the runner-up below the maximum: values equal to it (a ReLU's zeros, outputs
            # that see only padding) come from the same arithmetic and tie in every precision
            below = np.where(padded < top[..., None, None], padded, -np.inf)
            gaps = top - below.max(axis=(-2, -1))
            _note_kink("max_pool", gaps[np.isfinite(gaps)], x)
        return top
    total = windows(np.pad(x, widths)).sum(axis=(-2, -1))
    if layer.count_padding or layer.padding == "valid":
        return total / (layer.pool_size[0] * layer.pool_size[1])
    counts = windows(np.pad(np.ones_like(x[:1, ..., :1]), widths)).sum(axis=(-2, -1))
    return total / counts


def batchnorm(
    x: np.ndarray, layer: BatchNorm, p: Mapping[str, np.ndarray], name: str, training: bool, state: dict
) -> np.ndarray:
    """BatchNorm over every axis but the last (channels); in training, batch statistics (biased
    variance) and the running statistics' update written to ``state``."""
    axes = tuple(range(x.ndim - 1))
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        n = x.size // x.shape[-1]
        running_var = var * n / (n - 1) if layer.running_variance == "unbiased" else var
        m = layer.momentum
        state[f"{name}/moving_mean"] = m * p[f"{name}/moving_mean"] + (1 - m) * mean
        state[f"{name}/moving_variance"] = m * p[f"{name}/moving_variance"] + (1 - m) * running_var
    else:
        mean, var = p[f"{name}/moving_mean"], p[f"{name}/moving_variance"]
    return (x - mean) / np.sqrt(var + layer.epsilon) * p[f"{name}/gamma"] + p[f"{name}/beta"]


def forward(spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, *, training: bool = False) -> np.ndarray:
    """The model's output (after its output activation) in float64."""
    return output_activation(logits(spec, params, x, training=training), spec.output_activation)


def _check_input(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """``x`` checked as every backend checks it (:func:`spec.inputs.check_inputs`), and a token batch for
    sequences of padding only, which the judge refuses (the backends do not check it); float values in
    float64."""
    check_inputs(spec, x)
    x = np.asarray(x)
    if isinstance(spec, TransformerSpec):
        check_no_empty_sequence(spec, x)
        return x
    return x.astype(np.float64)


def check_no_empty_sequence(spec: TransformerSpec, tokens: np.ndarray) -> None:
    """No sequence may be padding only: its attention would have no key to weigh."""
    if spec.pad_token is not None:
        empty = np.flatnonzero((tokens == spec.pad_token).all(axis=1))
        if empty.size:
            raise SpecError("x", f"sequences {empty[:5].tolist()} made of padding only", "at least one other token")


def loss_from_logits(loss: str, z: np.ndarray, targets: np.ndarray, output_act: str) -> float:
    """The loss named ``loss`` (definitions and reductions in :mod:`spec.losses`) in float64."""
    check_loss(loss, output_act)
    z = np.asarray(z, dtype=np.float64)
    match loss:
        case "sparse_categorical_crossentropy":
            labels = np.asarray(targets)
            if labels.shape != z.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
                raise SpecError(
                    "targets",
                    f"{labels.dtype} array of shape {labels.shape}",
                    f"integer class ids of shape ({z.shape[0]},)",
                )
            return float(-log_softmax(z)[np.arange(len(labels)), labels].mean())
        case "categorical_crossentropy":
            t = _check_targets(targets, z.shape)
            return float(-(t * log_softmax(z)).sum(axis=-1).mean())
        case "binary_crossentropy":
            t = _check_targets(targets, z.shape)
            return float((np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean())
        case "mse":
            t = _check_targets(targets, z.shape)
            return float(((output_activation(z, output_act) - t) ** 2).mean())
    raise SpecError("loss", loss, "a known loss")


def _check_targets(targets: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    t = np.asarray(targets, dtype=np.float64)
    if t.shape != shape:
        raise SpecError("targets", f"array of shape {t.shape}", f"shape {shape}")
    return t


def l2_penalty(spec: ModelSpec, params: Mapping[str, np.ndarray]) -> float:
    """``kernel_l2 · Σ‖W‖²`` over the trained kernels (Dense and conv; not those of frozen layers,
    whose penalty is a constant, as Keras leaves it out): the spec's L2 term of the training loss."""
    if not spec.kernel_l2:
        return 0.0
    p = _as_float64_params(spec, params)
    trained = [name for name in trainable_names(spec) if name.endswith("/kernel")]
    return spec.kernel_l2 * sum(float(np.sum(p[name] ** 2)) for name in trained)


def loss(
    spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, targets: np.ndarray, loss_name: str
) -> float:
    """The training loss of the model on one batch in float64, including the spec's L2 term: in
    training mode (BatchNorm on batch statistics), without dropout (see :func:`logits`)."""
    if isinstance(spec, VAESpec):
        check_model_loss(spec, loss_name)
        return negative_elbo(spec, *vae_outputs(spec, params, x), targets)
    if isinstance(spec, GAN_SPECS):
        return gan_loss(spec, params, x, targets, loss_name)
    check_targets(spec, targets, loss_name)
    z = logits(spec, params, x, training=True)
    data_loss = loss_from_logits(loss_name, z, targets, spec.output_activation)
    return data_loss + l2_penalty(spec, params)


def closest_kink(
    spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, targets: np.ndarray, loss_name: str
) -> Kink | None:
    """The input closest to a kink (:class:`Kink`) in the pass whose gradients the checks judge —
    the training loss's — or ``None`` for a pass without piecewise ops."""
    with recording_kinks() as found:
        loss(spec, params, x, targets, loss_name)
    return min(found, key=lambda kink: kink.margin, default=None)


# --- gradients by central finite differences ------------------------------------------------------


@dataclass(frozen=True)
class DirectionalCheck:
    """One directional derivative of the loss: the judge's and a backend's."""

    param: str  # the tensor the direction moves, or "*" for all of them
    judge: float  # central finite difference in float64
    backend: float  # <grad, direction> with the backend's gradient
    typical: float  # |<grad, d>| expected for a random unit d: ||grad restricted to the tensors|| / sqrt(n)
    noise: float = 0.0  # the judge's own rounding: FD_NOISE_ULPS ulps of the loss over the step 2h

    @property
    def relative_error(self) -> float:
        """Error relative to the derivative's size. A projection that happens to be tiny is measured
        against a tenth of the typical one: float32 backprop leaves noise of ~1e-7 (MLPs) to ~1e-6
        (through a dozen training-mode BatchNorms) of the typical projection, and finite differences
        across ReLU and max-pool kinks about as much, which a smaller floor would blow up past the
        tolerance; a wrong gradient errs by a sizeable fraction of the typical projection. Anything
        below 1e-9 counts as zero (float64 finite differences are accurate to ~1e-11 here)."""
        return abs(self.judge - self.backend) / self.scale

    @property
    def scale(self) -> float:
        return max(abs(self.judge), abs(self.backend), 0.1 * self.typical, 1e-9)

    @property
    def resolved(self) -> bool:
        """Whether the judge's own rounding (``noise``) is below :data:`FD_RESOLUTION` of the
        derivative's scale: a float32 gradient (tolerance 1e-4) can be judged along it."""
        return self.noise <= FD_RESOLUTION * self.scale


# Central differences in float64. ReLU and max-pool networks are piecewise linear: the difference is
# exact except where an activation lies within h of a kink, and among the ~10⁶ activations of a CNN
# batch some do at h = 1e-5 (measured: 1% error on the MNIST convnet; 1e-4 at h = 1e-6, 2e-6 at 1e-7).
# Round-off grows as 1e-16·|L| / h — about 1e-9 at 1e-7 for losses of order one — and the truncation
# error of smooth activations, h²·f''', becomes negligible; both stay far below float32 gradient
# error (~1e-6). For a loss far above one — a VAE's sums over 784 pixels, ~500 — round-off grows with
# |L| (measured on mnist_vae: torch's float64 gradients 9e-5 from the differences at 1e-7, 1e-7 at
# 5e-5), so the step grows with |L| beyond LARGE_LOSS; below it the kink-safe step stays (scaling it
# by the MNIST convnet's 2.3 already cost 1.8e-3 in kink crossings).
FD_STEP = 1e-7
LARGE_LOSS = 10.0
# The rounding of a central difference: the two losses, each computed in float64, differ by a few
# ulps of |L| besides h·2·derivative, so the difference quotient is uncertain by ulps / 2h. Measured
# on a Keras Transformer ported to triptych (an attention query kernel whose directional derivative
# is 3.6e-6, loss 0.70): the difference at h = 1e-7 moved by one ulp (5.5e-10, 1.5e-4 of the
# derivative) from the converged value (h = 1e-6 … 1e-4), which Keras and JAX matched to 1e-9 of it.
# A direction whose noise exceeds FD_RESOLUTION of its derivative cannot judge a float32 gradient
# (tolerance 1e-4): it is reported unresolved (DirectionalCheck.resolved), never passed.
FD_NOISE_ULPS = 4
FD_RESOLUTION = 1e-5


def fd_step(loss_value: float) -> float:
    """The central-difference step for a loss of size ``loss_value``: FD_STEP, growing as |L| above
    LARGE_LOSS."""
    return FD_STEP * max(1.0, abs(loss_value) / LARGE_LOSS)


def random_direction(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random unit vector in parameter space (Gaussian, normalised over all tensors together)."""
    direction = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    norm = math.sqrt(sum(float((d**2).sum()) for d in direction.values()))
    return {name: d / norm for name, d in direction.items()}


def directional_derivative(
    spec: ModelSpec,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    targets: np.ndarray,
    loss_name: str,
    direction: Mapping[str, np.ndarray],
    step: float = FD_STEP,
) -> float:
    """(L(θ + h·d) − L(θ − h·d)) / 2h in float64, with ``direction`` covering any subset of tensors."""
    base = _as_float64_params(spec, params)

    def shifted(sign: float) -> dict[str, np.ndarray]:
        return {n: v + sign * step * direction[n] if n in direction else v for n, v in base.items()}

    return (loss(spec, shifted(+1), x, targets, loss_name) - loss(spec, shifted(-1), x, targets, loss_name)) / (
        2 * step
    )


def numerical_gradient(
    spec: ModelSpec,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    targets: np.ndarray,
    loss_name: str,
    names: Collection[str],
) -> dict[str, np.ndarray]:
    """The full gradient of the loss for tensors ``names`` by central differences, one coordinate at
    a time, in float64: two loss evaluations per scalar, so for small models only (a judge's
    optimizer step needs the whole gradient, not projections)."""
    base = _as_float64_params(spec, params)
    step = fd_step(loss(spec, base, x, targets, loss_name))
    grads = {}
    for name in names:
        shifted = {**base, name: base[name].copy()}  # one tensor moves, one coordinate at a time
        grad = np.zeros_like(base[name])
        for index in np.ndindex(grad.shape):
            shifted[name][index] = base[name][index] + step
            above = loss(spec, shifted, x, targets, loss_name)
            shifted[name][index] = base[name][index] - step
            grad[index] = (above - loss(spec, shifted, x, targets, loss_name)) / (2 * step)
            shifted[name][index] = base[name][index]
        grads[name] = grad
    return grads


@dataclass(frozen=True)
class JudgedDirection:
    """One random direction in parameter space and the judge's derivative of the loss along it."""

    param: str  # the tensor the direction moves, or "*" for all of them
    direction: dict[str, np.ndarray]
    derivative: float  # central finite difference in float64
    zero: bool  # whether every tensor it moves has an exactly zero gradient (spec.params.ParamInfo)
    noise: float = 0.0  # the difference quotient's own rounding (FD_NOISE_ULPS)


def judge_directions(
    spec: ModelSpec,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    targets: np.ndarray,
    loss_name: str,
    *,
    seed: int = 0,
    directions_per_param: int = 2,
    global_directions: int = 2,
) -> list[JudgedDirection]:
    """The judge's half of :func:`check_gradients`, which depends on no backend: each trained
    tensor gets its own directions (so a wrong gradient in a small bias is not drowned out by a large
    kernel), and a few directions move every tensor at once."""
    rng = np.random.default_rng(seed)
    shapes = {name: np.shape(params[name]) for name in trained_names(spec, loss_name)}
    plan = [(name, {name: shapes[name]}) for name in shapes for _ in range(directions_per_param)]
    plan += [("*", shapes)] * global_directions
    infos = param_specs(spec)
    value = loss(spec, params, x, targets, loss_name)
    step = fd_step(value)
    noise = FD_NOISE_ULPS * float(np.spacing(abs(value))) / (2 * step)
    judged = []
    for label, subset in plan:
        direction = random_direction(subset, rng)
        derivative = directional_derivative(spec, params, x, targets, loss_name, direction, step)
        zero = all(infos[n].zero_gradient for n in subset)
        judged.append(JudgedDirection(label, direction, derivative, zero, noise))
    return judged


def check_gradients(
    spec: ModelSpec,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    targets: np.ndarray,
    loss_name: str,
    grads: Mapping[str, np.ndarray],
    *,
    seed: int = 0,
    judged: Sequence[JudgedDirection] | None = None,
) -> list[DirectionalCheck]:
    """Compare a backend's gradients with the judge along random directions
    (:func:`judge_directions` for ``seed``, or those ``judged`` already on the same inputs)."""
    trained = trained_names(spec, loss_name)
    if set(grads) != set(trained):
        raise SpecError("grads", sorted(grads), f"one gradient per trainable parameter: {sorted(trained)}")
    if judged is None:
        judged = judge_directions(spec, params, x, targets, loss_name, seed=seed)

    def typical_projection(names: Collection[str]) -> float:
        moved = [np.asarray(grads[n], np.float64) for n in names]
        return math.sqrt(sum(float((g**2).sum()) for g in moved) / sum(g.size for g in moved))

    overall = typical_projection(trained)
    checks = []
    for one in judged:
        backend_value = sum(float((np.asarray(grads[n], np.float64) * d).sum()) for n, d in one.direction.items())
        # a tensor whose exact gradient is zero has only rounding to show: measured against the
        # whole gradient's typical projection, a real (wrong) gradient in it still stands out
        typical = overall if one.zero else typical_projection(one.direction)
        checks.append(DirectionalCheck(one.param, one.derivative, backend_value, typical, one.noise))
    return checks


# --- optimizers -----------------------------------------------------------------------------------


class ReferenceOptimizer:
    """The float64 update rules of :mod:`spec.optimizers`, applied to canonical parameter dicts."""

    def __init__(self, opt: OptimizerSpec, params: Mapping[str, np.ndarray]) -> None:
        self.opt = opt
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}
        for name, value in params.items():
            zeros = np.zeros(np.shape(value))
            slots = {
                "sgd": ("buffer",),
                "adam": ("m", "v"),
                "adamw": ("m", "v"),
                "rmsprop": ("v", "mean", "buffer"),
                "adagrad": ("acc",),
            }[opt.kind]
            self.state[name] = {slot: zeros.copy() for slot in slots}
            if opt.kind == "adagrad":
                self.state[name]["acc"] += opt.initial_accumulator

    def _denominator(self, second_moment: np.ndarray) -> np.ndarray:
        if self.opt.epsilon_placement == "inside_sqrt":
            return np.sqrt(second_moment + self.opt.epsilon)
        return np.sqrt(second_moment) + self.opt.epsilon

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One update; returns new float64 parameters and advances the optimizer state."""
        opt = self.opt
        rate = opt.learning_rate
        lr = learning_rate(rate, self.step_count) if isinstance(rate, ScheduleSpec) else rate
        self.step_count += 1
        t = self.step_count
        grads = {name: np.asarray(g, np.float64) for name, g in grads.items()}
        if opt.clip_global_norm is not None:
            norm = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
            grads = {name: g * min(1.0, opt.clip_global_norm / norm) for name, g in grads.items()}
        new = {}
        for name, value in params.items():
            theta = np.asarray(value, np.float64)
            g = grads[name]
            s = self.state[name]
            match opt.kind:
                case "sgd":
                    if opt.momentum:
                        s["buffer"] = opt.momentum * s["buffer"] + g
                        g = g + opt.momentum * s["buffer"] if opt.nesterov else s["buffer"]
                    theta = theta - lr * g
                case "adam" | "adamw":
                    assert opt.beta1 is not None and opt.beta2 is not None  # required (OptimizerSpec.__post_init__)
                    if opt.kind == "adamw":
                        theta = theta - lr * opt.weight_decay * theta
                    s["m"] = opt.beta1 * s["m"] + (1 - opt.beta1) * g
                    s["v"] = opt.beta2 * s["v"] + (1 - opt.beta2) * g**2
                    c1, c2 = 1 - opt.beta1**t, 1 - opt.beta2**t
                    if opt.epsilon_placement == "corrected":
                        theta = theta - lr * (s["m"] / c1) / (np.sqrt(s["v"] / c2) + opt.epsilon)
                    else:
                        theta = theta - lr * math.sqrt(c2) / c1 * s["m"] / (np.sqrt(s["v"]) + opt.epsilon)
                case "rmsprop":
                    assert opt.rho is not None  # required (OptimizerSpec.__post_init__)
                    s["v"] = opt.rho * s["v"] + (1 - opt.rho) * g**2
                    second = s["v"]
                    if opt.centered:
                        s["mean"] = opt.rho * s["mean"] + (1 - opt.rho) * g
                        second = second - s["mean"] ** 2
                    scaled = g / self._denominator(second)
                    if opt.momentum:
                        s["buffer"] = opt.momentum * s["buffer"] + scaled
                        scaled = s["buffer"]
                    theta = theta - lr * scaled
                case "adagrad":
                    s["acc"] = s["acc"] + g**2
                    theta = theta - lr * g / self._denominator(s["acc"])
            new[name] = theta
        return new


# --- learning-rate schedules ----------------------------------------------------------------------


def learning_rate(schedule: ScheduleSpec, step: int) -> float:
    """The schedule's rate at 0-based ``step`` in float64 (definitions in :mod:`spec.schedules`)."""
    s = schedule
    if not 0 <= step < s.total_steps:
        raise SpecError("step", step, f"an integer in [0, {s.total_steps})")
    # each kind's fields are set (ScheduleSpec.__post_init__ requires them), as the asserts tell mypy
    match s.kind:
        case "constant":
            return s.learning_rate
        case "step":
            assert s.gamma is not None and s.step_size is not None
            return s.learning_rate * s.gamma ** (step // s.step_size)
        case "exponential":
            assert s.gamma is not None
            return s.learning_rate * s.gamma**step
        case "cosine":
            assert s.floor is not None
            return _cosine(s.learning_rate, s.floor, step, s.total_steps)
        case "warmup_cosine":
            assert s.floor is not None and s.warmup_steps is not None and s.warmup_start is not None
            if step < s.warmup_steps:
                return s.warmup_start + (s.learning_rate - s.warmup_start) * step / s.warmup_steps
            return _cosine(s.learning_rate, s.floor, step - s.warmup_steps, s.total_steps - s.warmup_steps)
    raise SpecError("schedule", s.kind, "a known schedule")


def _cosine(start: float, floor: float, step: int, length: int) -> float:
    return floor + (start - floor) * (1 + math.cos(math.pi * step / length)) / 2
