"""The spec's models as ``flax.nnx`` modules."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import partial
from itertools import pairwise
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.attention import dot_product_attention_weights
from flax.typing import PrecisionLike

from spec.errors import UnsupportedOption
from spec.layer_paths import LayerPaths, NativePath, place, resolve
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


def activation(act: Activation) -> Callable[[jax.Array], jax.Array]:
    """The JAX activation function for a spec activation, every parameter passed explicitly."""
    match act.kind:
        case "relu":
            return jax.nn.relu
        case "tanh":
            return jnp.tanh
        case "sigmoid":
            return jax.nn.sigmoid
        case "leaky_relu":
            assert act.negative_slope is not None  # Activation requires it for leaky_relu
            return partial(jax.nn.leaky_relu, negative_slope=act.negative_slope)  # (catalogue: leaky ReLU slope)
        case "elu":
            assert act.alpha is not None  # Activation requires it for elu
            return partial(jax.nn.elu, alpha=act.alpha)
        case "gelu":
            # jax.nn.gelu defaults to the tanh approximation; torch and Keras default to exact.
            return partial(jax.nn.gelu, approximate=act.approximate == "tanh")  # (catalogue: GELU)
        case "linear":
            return lambda x: x
    raise ValueError(f"no JAX activation for {act}")


def output_activation(logits: jax.Array, kind: str) -> jax.Array:
    """The model's outputs from its logits (softmax over the last axis, sigmoid or identity)."""
    if kind == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    if kind == "sigmoid":
        return jax.nn.sigmoid(logits)
    return logits


class _Recording:
    """A layer that hands what it returns to ``record`` and is otherwise the layer."""

    def __init__(self, layer: Any, record: Callable[[Any], None]) -> None:
        self._layer, self._record = layer, record

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self._layer(*args, **kwargs)
        self._record(output)
        return output

    def __getattr__(self, name: str) -> Any:
        return getattr(self._layer, name)


def recorded_outputs(
    module: nnx.Module, paths: Mapping[str, NativePath], run: Callable[[], object]
) -> dict[str, np.ndarray]:
    """What the layer at each of ``paths`` under ``module`` returned while ``run()`` called it, by
    name, as float64 — of a tuple, the first element. Each is replaced by a :class:`_Recording` of
    it meanwhile (``nnx.capture``'s own recording would change a scanned cell's carry)."""
    found: dict[str, np.ndarray] = {}

    def keep(name: str) -> Callable[[Any], None]:
        def record(output: Any) -> None:
            value = output[0] if isinstance(output, tuple) else output
            found[name] = np.asarray(value, np.float64)

        return record

    layers = [(path, resolve(module, path)) for path in paths.values()]
    try:
        for (path, layer), name in zip(layers, paths):
            place(module, path, _Recording(layer, keep(name)))
        run()
    finally:
        for path, layer in reversed(layers):
            place(module, path, layer)
    return found


class SpecModel(nnx.Module):
    """What every model adds to ``nnx.Module``: its spec, where each canonical layer is
    (``layer_paths``, recorded as it builds them; also the layer's path in ``nnx.state(model)``),
    its outputs, its L2 term, and BatchNorm layers that stay on running statistics while frozen
    (``frozen_batchnorm_paths``, set by :func:`impls.jax.weights.freeze`)."""

    spec: ModelSpec
    layer_paths: LayerPaths = LayerPaths()
    precision: Precision = "float32"  # the dtype of its tensors, set by spec.backend.NativeBackend.build
    frozen_batchnorm_paths: tuple[NativePath, ...] = ()
    frozen_paths: frozenset[NativePath]  # set by impls.jax.weights.freeze; absent until then
    in_training_mode: bool | None = None  # what train() or eval() set last; None before either

    def train(self, **attributes: object) -> None:
        super().train(**attributes)
        for path in self.frozen_batchnorm_paths:
            layer = resolve(self, path)
            assert isinstance(layer, nnx.BatchNorm)  # freeze records the paths of BatchNorms only
            layer.use_running_average = True
        self.in_training_mode = True

    def eval(self, **attributes: object) -> None:
        super().eval(**attributes)
        self.in_training_mode = False

    def set_mode(self, training: bool) -> None:
        """``train()`` or ``eval()``, skipped when the model is in that mode already: each walks the
        whole module graph, 0.3 ms on the MNIST MLP — a quarter of its compiled train step."""
        if self.in_training_mode is not training:
            self.train() if training else self.eval()

    def l2_penalty(self) -> jax.Array | float:
        """The spec's L2 term of the training loss: ``kernel_l2 · Σ‖W‖²`` over the trained conv and
        Linear kernels (``frozen_paths``: see :func:`impls.jax.weights.freeze`); 0.0 when every one is frozen."""
        frozen: frozenset[NativePath] = getattr(self, "frozen_paths", frozenset())
        kernels = [
            m.kernel[...]
            for path, m in nnx.iter_modules(self)
            if isinstance(m, (nnx.Conv, nnx.ConvTranspose, nnx.Linear)) and (*path, "kernel") not in frozen
        ]
        return self.spec.kernel_l2 * sum(jnp.sum(jnp.square(k)) for k in kernels)

    def infer(self, x: jax.Array) -> jax.Array:
        """The model's outputs: logits passed through the spec's output activation."""
        return output_activation(self(x), self.spec.output_activation)


class MLP(SpecModel):
    """Linear layers with an activation (and dropout) after each hidden one; ``__call__`` returns logits.

    ``model.train()`` / ``model.eval()`` switch dropout on and off; its masks come from the ``dropout``
    stream of ``rngs``.
    """

    spec: MLPSpec

    def __init__(self, spec: MLPSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        sizes = spec.layer_sizes
        self.dense = nnx.List(
            [
                nnx.Linear(fan_in, fan_out, use_bias=spec.use_bias, dtype=compute_dtype(), rngs=rngs)
                for fan_in, fan_out in pairwise(sizes)
            ]
        )
        self.activations = tuple(activation(a) for a in spec.activations)
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.layer_paths = LayerPaths({dense_name(i): ("dense", i) for i in range(len(self.dense))})

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer, act in zip(self.dense, self.activations):
            x = self.dropout(act(layer(x)))
        return self.dense[-1](x)


def _flax_padding(layer: Conv2D | Pool2D, shape: tuple[int, ...]) -> str | tuple[tuple[int, int], ...]:
    """Flax's own 'VALID' or 'SAME' where it means the spec's padding, else the explicit pairs."""
    window = layer.kernel_size if isinstance(layer, Conv2D) else layer.pool_size
    size = (shape[0], shape[1])  # the image's (height, width)
    pads = resolve_padding(layer.padding, size, window, layer.strides)
    if pads == ((0, 0), (0, 0)):
        return "VALID"
    return "SAME" if pads == resolve_padding("same", size, window, layer.strides) else pads


def batchnorm(layer: BatchNorm, channels: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """``nnx.BatchNorm`` with the spec's momentum and epsilon. Its default one-pass variance
    (E[x²] − E[x]²) cancels catastrophically in float32 when |mean| ≫ std, so the two-pass one, as
    torch and TensorFlow compute it."""
    if layer.running_variance != "biased":
        raise UnsupportedOption(
            "jax",
            "batchnorm.running_variance",
            layer.running_variance,
            "nnx.BatchNorm updates its running variance with the batch's biased variance",
            native="biased",
        )
    return nnx.BatchNorm(
        channels,
        momentum=layer.momentum,
        epsilon=layer.epsilon,
        use_fast_variance=False,  # (catalogue: BatchNorm batch variance)
        dtype=compute_dtype(),
        rngs=rngs,
    )


def flatten(x: jax.Array) -> jax.Array:
    """NHWC feature maps to vectors in (h, w, c) order, the canonical one."""
    return x.reshape(x.shape[0], -1)


def global_avg_pool(x: jax.Array) -> jax.Array:
    return x.mean(axis=(1, 2))


def layer_callable(layer: Layer, shape: tuple[int, ...], rngs: nnx.Rngs) -> Callable[[jax.Array], jax.Array]:
    """The Flax module or function for one spec layer whose input has ``shape``."""
    match layer:
        case Conv2D():
            return nnx.Conv(
                shape[2],
                layer.filters,
                layer.kernel_size,
                strides=layer.strides,
                padding=_flax_padding(layer, shape),
                use_bias=layer.use_bias,
                dtype=compute_dtype(),
                rngs=rngs,
            )
        case ConvTranspose2D():
            # the gradient of a convolution, as torch and Keras compute it (transpose_kernel); lax
            # pads the stride-dilated input, by k − 1 for the full output, less what the spec crops
            crops = layer.crops()
            pads = [(k - 1 - c[0], k - 1 - c[1]) for k, c in zip(layer.kernel_size, crops)]
            return nnx.ConvTranspose(
                shape[2],
                layer.filters,
                layer.kernel_size,
                strides=layer.strides,
                padding=pads,
                use_bias=layer.use_bias,
                transpose_kernel=True,  # (catalogue: transposed conv kernel)
                dtype=compute_dtype(),
                rngs=rngs,
            )
        case Pool2D() if layer.kind == "max":
            return partial(
                nnx.max_pool, window_shape=layer.pool_size, strides=layer.strides, padding=_flax_padding(layer, shape)
            )
        case Pool2D():
            return partial(
                nnx.avg_pool,
                window_shape=layer.pool_size,
                strides=layer.strides,
                padding=_flax_padding(layer, shape),
                count_include_pad=layer.count_padding is not False,  # (catalogue: average-pool padding)
            )
        case BatchNorm():
            return batchnorm(layer, shape[-1], rngs)
        case Act():
            return activation(layer.activation)
        case Flatten():
            return flatten
        case Reshape():  # vectors to NHWC feature maps, (h, w, c) order
            return partial(jnp.reshape, shape=(-1, *layer.target_shape))
        case GlobalAvgPool():
            return global_avg_pool
        case Dense():
            return nnx.Linear(shape[0], layer.units, use_bias=layer.use_bias, dtype=compute_dtype(), rngs=rngs)
        case Dropout():
            return nnx.Dropout(layer.rate, rngs=rngs)
    raise ValueError(f"no Flax layer for {layer}")


class CNN(SpecModel):
    """The spec's layers in order as an ``nnx.Sequential``, one module or function per spec layer."""

    spec: CNNSpec

    def __init__(self, spec: CNNSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        self.body = nnx.Sequential(
            *(layer_callable(layer, shape, rngs) for layer, shape in zip(spec.layers, spec.shapes()))
        )
        names = cnn_layer_names(spec)
        self.layer_paths = LayerPaths({name: ("body", "layers", i) for i, name in enumerate(names) if name})

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.body(x)


class ResidualBlockBase(nnx.Module):
    """The shortcut both residual blocks share: the input itself, or shortcut_conv 1×1/stride →
    shortcut_bn where the shape changes."""

    def __init__(self, block: ResidualBlock, spec: ResNetSpec, shape: tuple[int, ...], *, rngs: nnx.Rngs) -> None:
        convs = block.path
        inputs = block.path_inputs(shape)
        for letter, conv in convs.items():
            setattr(self, f"conv_{letter}", layer_callable(conv, inputs[letter], rngs))
            setattr(self, f"bn_{letter}", batchnorm(spec.batchnorm, conv.filters, rngs))
        self.shortcut_conv = layer_callable(block.shortcut_conv, shape, rngs) if block.has_shortcut_conv else None
        self.shortcut_bn = batchnorm(spec.batchnorm, block.out_channels, rngs) if block.has_shortcut_conv else None
        parts = [f"{kind}_{letter}" for letter in convs for kind in ("conv", "bn")]
        parts += ["shortcut_conv", "shortcut_bn"] if block.has_shortcut_conv else []
        self.layer_paths = LayerPaths({part: (part,) for part in parts})

    def shortcut(self, x: jax.Array) -> jax.Array:
        if self.shortcut_conv is None:
            return x
        assert self.shortcut_bn is not None  # made together with shortcut_conv
        return self.shortcut_bn(self.shortcut_conv(x))


class BasicBlock(ResidualBlockBase):
    """conv_a → bn_a → relu → conv_b → bn_b, plus the (projected) input, then relu."""

    # set by ResidualBlockBase.__init__, one pair per convolution of the block's path
    conv_a: nnx.Conv
    bn_a: nnx.BatchNorm
    conv_b: nnx.Conv
    bn_b: nnx.BatchNorm

    def __call__(self, x: jax.Array) -> jax.Array:
        out = jax.nn.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        return jax.nn.relu(out + self.shortcut(x))


class Bottleneck(ResidualBlockBase):
    """conv_a 1×1 → bn_a → relu → conv_b 3×3/stride → bn_b → relu → conv_c 1×1 (4× wider) → bn_c,
    plus the (projected) input, then relu."""

    # set by ResidualBlockBase.__init__, one pair per convolution of the block's path
    conv_a: nnx.Conv
    bn_a: nnx.BatchNorm
    conv_b: nnx.Conv
    bn_b: nnx.BatchNorm
    conv_c: nnx.Conv
    bn_c: nnx.BatchNorm

    def __call__(self, x: jax.Array) -> jax.Array:
        out = jax.nn.relu(self.bn_a(self.conv_a(x)))
        out = jax.nn.relu(self.bn_b(self.conv_b(out)))
        out = self.bn_c(self.conv_c(out))
        return jax.nn.relu(out + self.shortcut(x))


class ResNet(SpecModel):
    """Stem, stages of residual blocks, global average pooling and a Linear head."""

    spec: ResNetSpec

    def __init__(self, spec: ResNetSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        stem = []
        shape: tuple[int, ...] = spec.input_shape
        stem_layers: tuple[Layer, ...] = spec.stem_layers  # conv, bn, relu and the ImageNet stem's pool
        for layer in stem_layers:
            stem.append(layer_callable(layer, shape, rngs))
            shape = layer_output_shape(layer, shape)
        self.stem = nnx.Sequential(*stem)
        shapes = spec.shapes()
        paths = LayerPaths({"stem/conv": ("stem", "layers", 0), "stem/bn": ("stem", "layers", 1)})
        stages: list[list[ResidualBlockBase]] = [[] for _ in spec.widths]
        for block in spec.blocks():
            residual_block = (Bottleneck if block.bottleneck else BasicBlock)(
                block, spec, shapes[block.name], rngs=rngs
            )
            stages[block.stage].append(residual_block)
            paths |= residual_block.layer_paths.under(block.name, "stages", block.stage, block.index)
        self.stages = nnx.List([nnx.List(blocks) for blocks in stages])
        self.head = nnx.Linear(spec.head_features, spec.num_classes, dtype=compute_dtype(), rngs=rngs)
        self.layer_paths = paths | {"head": ("head",)}

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.stem(x)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return self.head(global_avg_pool(x))


_COMPUTE_DTYPE: ContextVar[jnp.dtype | None] = ContextVar("compute_dtype", default=None)


def compute_dtype() -> jnp.dtype | None:
    """The dtype the model being built computes in, passed to each Flax module as its ``dtype``:
    bfloat16 or float16 for a mixed-precision model (its ``param_dtype`` stays float32), set by the
    backend while it builds one (:func:`computing_in`); ``None`` otherwise, where a Flax module
    computes in the dtype of its inputs and parameters."""
    return _COMPUTE_DTYPE.get()


@contextlib.contextmanager
def computing_in(dtype: jnp.dtype | None) -> Iterator[None]:
    """:func:`compute_dtype` while a model is built."""
    token = _COMPUTE_DTYPE.set(dtype)
    try:
        yield
    finally:
        _COMPUTE_DTYPE.reset(token)


def float_dtype() -> jnp.dtype:
    """The float dtype of the model being built: float64 under JAX's x64 mode, which the backend
    turns on while it builds a float64 model (:func:`impls.jax.backend.precision_scope`), else
    float32. For the Flax modules that fix a dtype when they are made, float32 unless told (their
    ``param_dtype``, or ``dtype`` for ``nnx.SimpleCell`` and ``nnx.Embed``); the others compute in
    the dtype of their inputs and parameters, whatever the loaded parameters' dtype."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class GRUCell(nnx.RNNCellBase):
    """A GRU cell with either reset formula (:data:`spec.models.RNN_CELLS`). ``nnx.GRUCell`` applies
    the reset after the recurrent matmul but has no recurrent bias (``b'_n`` in ``r·(h·U_n + b'_n)``),
    which torch's and Keras's GRUs have; this cell holds its biases as one (2, 3H) parameter — input
    bias, recurrent bias — or (3H,) for the reset-before formula, and its gates in nnx's r, z, n order."""

    def __init__(self, in_features: int, hidden_features: int, *, reset_after: bool, rngs: nnx.Rngs) -> None:
        self.hidden_features = hidden_features
        self.reset_after = reset_after
        self.dense_i = nnx.Linear(in_features, 3 * hidden_features, use_bias=False, dtype=compute_dtype(), rngs=rngs)
        self.dense_h = nnx.Linear(
            hidden_features, 3 * hidden_features, use_bias=False, dtype=compute_dtype(), rngs=rngs
        )
        shape = (2, 3 * hidden_features) if reset_after else (3 * hidden_features,)
        self.bias = nnx.Param(jnp.zeros(shape))
        self.dtype = compute_dtype()  # like a Flax Linear's, the bias takes part in the compute dtype

    def __call__(self, carry: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = carry
        bias = self.bias[...] if self.dtype is None else self.bias[...].astype(self.dtype)
        input_bias, recurrent_bias = (bias[0], bias[1]) if self.reset_after else (bias, 0.0)
        x_r, x_z, x_n = jnp.split(self.dense_i(inputs) + input_bias, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(self.dense_h(h) + recurrent_bias, 3, axis=-1)
        r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
        if self.reset_after:
            n = jnp.tanh(x_n + r * h_n)
        else:
            n = jnp.tanh(x_n + (r * h) @ self.dense_h.kernel[:, 2 * self.hidden_features :])
        new_h = (1.0 - z) * n + z * h
        return new_h, new_h

    def initialize_carry(
        self, input_shape: tuple[int, ...], rngs: object = None, carry_init: object = None
    ) -> jax.Array:
        return jnp.zeros((*input_shape[:-1], self.hidden_features))

    @property
    def num_feature_axes(self) -> int:
        return 1


class SimpleCell(nnx.SimpleCell):
    """``nnx.SimpleCell`` whose zero initial state takes its compute dtype: Flax's draws it in the
    ``param_dtype``, so a bfloat16 cell with float32 parameters returns a state of another dtype than
    it took, and ``nnx.RNN``'s scan refuses it (docs/findings.md, finding 15)."""

    def initialize_carry(self, *args: Any, **kwargs: Any) -> jax.Array:
        carry = super().initialize_carry(*args, **kwargs)
        return carry if self.dtype is None else carry.astype(self.dtype)


def recurrent_cell(spec: RNNSpec, in_features: int, rngs: nnx.Rngs) -> nnx.RNNCellBase:
    """The Flax cell for one recurrent layer: nnx's own for SimpleRNN and LSTM (same gate order as
    the spec), :class:`GRUCell` for the GRU."""
    # A Flax cell draws its zero initial state in its param_dtype, and SimpleCell alone also
    # computes in float32 unless told (its dtype defaults to float32, the others' to None: the
    # dtype of the inputs and parameters).
    dtype = float_dtype()
    match spec.cell:
        case "simple_rnn":
            return SimpleCell(
                in_features, spec.hidden_size, activation_fn=jnp.tanh,
                dtype=compute_dtype() or dtype, param_dtype=dtype, rngs=rngs,
            )  # fmt: skip
        case "lstm":
            return nnx.OptimizedLSTMCell(
                in_features, spec.hidden_size, gate_fn=jax.nn.sigmoid, activation_fn=jnp.tanh,
                param_dtype=dtype, dtype=compute_dtype(), rngs=rngs,
            )  # fmt: skip
        case "gru":
            # (catalogue: recurrent biases)
            return GRUCell(in_features, spec.hidden_size, reset_after=spec.gru_reset == "after", rngs=rngs)
    raise ValueError(f"no Flax cell for {spec.cell!r}")


class RNN(SpecModel):
    """Stacked ``nnx.RNN`` layers (``nnx.Bidirectional`` when the spec says so) and a Linear head on
    the last states or on every step."""

    spec: RNNSpec

    def __init__(self, spec: RNNSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        layers: list[nnx.RNN | nnx.Bidirectional] = []
        paths: dict[str, NativePath] = {}
        for index in range(spec.num_layers):
            in_features = spec.input_size if index == 0 else spec.features
            if spec.bidirectional:
                forward = nnx.RNN(recurrent_cell(spec, in_features, rngs))
                backward = nnx.RNN(recurrent_cell(spec, in_features, rngs))
                layers.append(nnx.Bidirectional(forward, backward))
            else:
                layers.append(nnx.RNN(recurrent_cell(spec, in_features, rngs)))
            # each direction's cell holds its tensors
            wrapped = [(f"{d}_rnn",) for d in spec.directions] if spec.bidirectional else [()]
            for name, direction in zip(rnn_layer_names(spec, index), wrapped):
                paths[name] = ("recurrent", index, *direction, "cell")
        self.recurrent = nnx.List(layers)
        if spec.head == "attention":
            additive = spec.attention == "additive"
            self.attention = (
                nnx.Linear(spec.features, spec.attention_units, dtype=compute_dtype(), rngs=rngs) if additive else None
            )
            width = spec.attention_units if additive else spec.features
            self.attention_score = nnx.Linear(width, 1, use_bias=False, dtype=compute_dtype(), rngs=rngs)
            paths |= {"attention": ("attention",)} if additive else {}
            paths["attention_score"] = ("attention_score",)
        self.head = nnx.Linear(spec.features, spec.output_size, dtype=compute_dtype(), rngs=rngs)
        self.layer_paths = LayerPaths({**paths, "dense_0": ("head",)})

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.recurrent:
            # typed outputs | (carry, outputs) whatever return_carry is; left False here, so the outputs
            x = layer(x)  # type: ignore[assignment]
        if self.spec.head == "sequence":
            return self.head(x)
        if self.spec.head == "attention":
            return self.head(self.pool(x))
        hidden = self.spec.hidden_size  # the backward direction's final state is at step 0
        last = x[:, -1, :hidden]
        if self.spec.bidirectional:
            last = jnp.concatenate([last, x[:, 0, hidden:]], axis=-1)
        return self.head(last)

    def pool(self, outputs: jax.Array) -> jax.Array:
        """Every step's output weighted by the softmax over the steps of its score, summed."""
        keys = outputs if self.attention is None else jnp.tanh(self.attention(outputs))
        weights = jax.nn.softmax(self.attention_score(keys), axis=1)  # (batch, time, 1)
        return (weights * outputs).sum(axis=1)


def layer_norm(spec: TransformerSpec, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Flax's default fast variance, E[x²] − E[x]², cancels in float32 where the mean is large
    return nnx.LayerNorm(
        spec.d_model,
        epsilon=spec.layer_norm_epsilon,  # (catalogue: LayerNorm epsilon)
        use_fast_variance=False,
        dtype=compute_dtype(),
        rngs=rngs,
    )


def unfused_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    *,
    dropout_rate: float = 0.0,
    dtype: jnp.dtype | None = None,
    precision: PrecisionLike = None,
    **_: object,  # dropout's key and flags, the sow hook: no dropout here (checked)
) -> jax.Array:
    """Attention as Flax writes it unfused — ``dot_product_attention_weights``, then the weighted
    sum of the values — whose softmax runs in the inputs' dtype. ``nnx.MultiHeadAttention``'s default
    without dropout is the fused ``jax.nn.dot_product_attention``, which computes its softmax in
    float32 whatever the inputs (jax/_src/nn/functions.py, ``_dot_product_attention_core``): 5e-7
    off a float64 gradient (measured, tiny_post_mean)."""
    if dropout_rate:
        raise ValueError(f"unfused_attention has no dropout; asked for {dropout_rate}")
    weights = dot_product_attention_weights(query, key, bias, mask, dtype=dtype, precision=precision)
    return jnp.einsum("...hqk,...khd->...qhd", weights.astype(value.dtype), value, precision=precision)


def float32_softmax_attention(query: jax.Array, key: jax.Array, value: jax.Array, **options: Any) -> jax.Array:
    """What ``jax.nn.dot_product_attention`` computes for low-precision inputs — scores and softmax
    in float32, the weights cast back to the values' dtype — written unfused: for float16 the fused
    function asks XLA:CPU for the F16_F16_F32 dot algorithm, which it refuses under ``jax.jit``
    (docs/findings.md, finding 16)."""
    f32 = jnp.float32
    return unfused_attention(query.astype(f32), key.astype(f32), value, **{**options, "dtype": f32})


def attention_function(dtype: jnp.dtype | None) -> Callable[..., jax.Array]:
    """The attention an encoder layer computing in ``dtype`` (its parameters' when None) runs:
    Flax's fused default, but for a float64 witness (:func:`unfused_attention`) and float16
    (:func:`float32_softmax_attention`)."""
    if float_dtype() == jnp.float64:
        return unfused_attention
    return float32_softmax_attention if dtype == jnp.float16 else nnx.dot_product_attention


class EncoderLayer(nnx.Module):
    """Self-attention (``nnx.MultiHeadAttention``) and the FFN (two ``nnx.Linear``), each with its
    residual and ``nnx.LayerNorm``, after (post-norm) or before (pre-norm) the sublayer."""

    def __init__(self, spec: TransformerSpec, *, rngs: nnx.Rngs) -> None:
        self.pre_norm = spec.norm == "pre"
        attention_fn = attention_function(compute_dtype())
        self.attention = nnx.MultiHeadAttention(
            spec.num_heads, spec.d_model, spec.attention_width, dropout_rate=0.0, decode=False,
            attention_fn=attention_fn, dtype=compute_dtype(), rngs=rngs,
        )  # fmt: skip
        self.attention_norm = layer_norm(spec, rngs)
        self.ffn_0 = nnx.Linear(spec.d_model, spec.ff_size, dtype=compute_dtype(), rngs=rngs)
        self.activation = activation(spec.activation)
        self.ffn_1 = nnx.Linear(spec.ff_size, spec.d_model, dtype=compute_dtype(), rngs=rngs)
        self.ffn_norm = layer_norm(spec, rngs)
        # nnx.MultiHeadAttention's query, key, value and out LinearGenerals hold the canonical projections
        projections = {"query": "query", "key": "key", "value": "value", "output": "out"}
        self.layer_paths = LayerPaths(
            {f"attention/{part}": ("attention", native) for part, native in projections.items()}
            | {part: (part,) for part in ("attention_norm", "ffn_0", "ffn_1", "ffn_norm")}
        )

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        def ffn(h: jax.Array) -> jax.Array:
            return self.ffn_1(self.activation(self.ffn_0(h)))

        if self.pre_norm:
            x = x + self.attention(self.attention_norm(x), mask=mask)
            return x + ffn(self.ffn_norm(x))
        x = self.attention_norm(x + self.attention(x, mask=mask))
        return self.ffn_norm(x + ffn(x))


class Transformer(SpecModel):
    """``nnx.Embed``, positions, ``EncoderLayer``s, pooling and a Linear head; ``__call__`` takes
    token ids and returns logits."""

    spec: TransformerSpec

    def __init__(self, spec: TransformerSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        self.embedding = nnx.Embed(
            spec.vocab_size, spec.d_model, param_dtype=float_dtype(), dtype=compute_dtype(), rngs=rngs
        )
        paths = LayerPaths({"embedding": ("embedding",)})
        if spec.positional == "learned":  # a table indexed by position
            self.position_embeddings = nnx.Embed(
                spec.seq_len, spec.d_model, param_dtype=float_dtype(), dtype=compute_dtype(), rngs=rngs
            )
            paths |= {"position": ("position_embeddings",)}
        self.encoders = nnx.List([EncoderLayer(spec, rngs=rngs) for _ in range(spec.num_layers)])
        for index, encoder in enumerate(self.encoders):
            paths |= encoder.layer_paths.under(encoder_layer_name(index), "encoders", index)
        self.final_norm = layer_norm(spec, rngs) if spec.norm == "pre" else None
        paths |= {"final_norm": ("final_norm",)} if self.final_norm is not None else {}
        self.head = nnx.Linear(spec.d_model, spec.output_size, dtype=compute_dtype(), rngs=rngs)
        self.layer_paths = paths | {"dense_0": ("head",)}

    def __call__(self, tokens: jax.Array) -> jax.Array:
        spec = self.spec
        scale = math.sqrt(spec.d_model) if spec.scale_embedding else 1.0
        embedded = self.embedding(tokens) * scale
        if spec.positional == "learned":
            positions = self.position_embeddings.embedding[...]
        else:  # a constant (an array attribute would be state); jit folds it
            positions = jnp.asarray(sinusoidal_positions(spec.seq_len, spec.d_model), embedded.dtype)
        x = embedded + positions
        keep = None if spec.pad_token is None else tokens != spec.pad_token
        # (batch, 1, query, key): every query sees the non-padding keys only
        # (catalogue: padding mask)
        mask = None if keep is None else nnx.make_attention_mask(jnp.ones_like(keep), keep, dtype=bool)
        for encoder in self.encoders:
            x = encoder(x, mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if spec.pooling == "mean":
            if keep is None:
                x = x.mean(axis=1)
            else:
                weights = keep[..., None].astype(x.dtype)
                x = (x * weights).sum(axis=1) / weights.sum(axis=1)
        elif spec.pooling == "first":
            x = x[:, 0]
        return self.head(x)


class VAEOutput(NamedTuple):
    """What a VAE's call returns: the decoder's logits and q(z|x)'s parameters, all the loss needs."""

    logits: jax.Array
    mean: jax.Array
    log_variance: jax.Array


def logits_of(output: jax.Array | VAEOutput) -> jax.Array:
    """A model's logits from what its call returned."""
    return output.logits if isinstance(output, VAEOutput) else output


class VAE(SpecModel):
    """Encoder and decoder MLPs with the reparameterisation between them; ``__call__`` takes images
    with their noise ε side by side (see :class:`spec.models.VAESpec`)."""

    spec: VAESpec

    def __init__(self, spec: VAESpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        self.encoder = MLP(spec.encoder, rngs=rngs)
        self.decoder = MLP(spec.decoder, rngs=rngs)
        self.layer_paths = self.encoder.layer_paths.under("encoder", "encoder") | self.decoder.layer_paths.under(
            "decoder", "decoder"
        )

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The mean and log-variance of q(z|x)."""
        mean, log_variance = jnp.split(self.encoder(images), 2, axis=-1)
        return mean, log_variance

    def __call__(self, inputs: jax.Array) -> VAEOutput:
        images, noise = inputs[:, : self.spec.input_size], inputs[:, self.spec.input_size :]
        mean, log_variance = self.encode(images)
        z = mean + jnp.exp(0.5 * log_variance) * noise
        return VAEOutput(self.decoder(z), mean, log_variance)

    def infer(self, inputs: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(self(inputs).logits)


class GAN(SpecModel):
    """Generator and discriminator (MLPs, or CNNs for a DCGAN); ``__call__`` maps latent noise to
    the generator's logits (``infer``: the samples). The training losses use both
    (:func:`impls.jax.losses.gan_loss`)."""

    spec: GANSpec | ConvGANSpec

    def __init__(self, spec: GANSpec | ConvGANSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        network = MODEL_CLASSES  # each network is the model of its own spec
        self.generator = network[type(spec.generator)](spec.generator, rngs=rngs)
        self.discriminator = network[type(spec.discriminator)](spec.discriminator, rngs=rngs)
        self.layer_paths = self.generator.layer_paths.under(
            "generator", "generator"
        ) | self.discriminator.layer_paths.under("discriminator", "discriminator")

    def __call__(self, z: jax.Array) -> jax.Array:
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
