"""The spec's models as Keras 3 layers and models."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, ClassVar, NamedTuple

import keras
import numpy as np

from spec.backend import keras_executor
from spec.config import spec_from_config, to_config
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

# triptych's name for Keras on the backend this process runs it on (keras, keras-jax, keras-torch):
# what this package's errors name
EXECUTOR = keras_executor(keras.backend.backend()) or f"keras on {keras.backend.backend()}"


def activation(act: Activation) -> Callable[[keras.KerasTensor], keras.KerasTensor]:
    """The Keras activation function for a spec activation, every parameter passed explicitly."""
    match act.kind:
        case "relu" | "tanh" | "sigmoid" | "linear":
            return keras.activations.get(act.kind)
        case "leaky_relu":
            # (catalogue: leaky ReLU slope)
            return partial(keras.activations.leaky_relu, negative_slope=act.negative_slope)
        case "elu":
            return partial(keras.activations.elu, alpha=act.alpha)
        case "gelu":
            return partial(keras.activations.gelu, approximate=act.approximate == "tanh")  # (catalogue: GELU)
    raise ValueError(f"no Keras activation for {act}")


def output_activation(logits: keras.KerasTensor, kind: str) -> keras.KerasTensor:
    """The model's outputs from its logits (softmax over the last axis, sigmoid or identity)."""
    if kind == "softmax":
        return keras.ops.softmax(logits, axis=-1)
    if kind == "sigmoid":
        return keras.ops.sigmoid(logits)
    return logits


@contextlib.contextmanager
def linear(layer: keras.layers.Layer) -> Iterator[None]:
    """``layer`` without its own activation, while open."""
    activation = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield
    finally:
        layer.activation = activation


Seen = Callable[[keras.layers.Layer, Callable[..., Any], tuple[Any, ...], dict[str, Any], Any], None]


@contextlib.contextmanager
def watching(layers: Iterable[keras.layers.Layer], seen: Seen) -> Iterator[None]:
    """While open, each eager call of each of ``layers`` is handed, after it runs, to
    ``seen(layer, call, args, kwargs, output)`` (``call``: the layer's own). Keras has no hooks:
    each layer's ``call`` is wrapped on the instance meanwhile."""

    def wrapped(layer: keras.layers.Layer) -> Callable[..., Any]:
        call = layer.call

        def watched(*args: Any, **kwargs: Any) -> Any:
            output = call(*args, **kwargs)
            seen(layer, call, args, kwargs, output)
            return output

        return watched

    watched = list(dict.fromkeys(layers))
    for layer in watched:
        layer.call = wrapped(layer)
    try:
        yield
    finally:
        for layer in watched:
            del layer.call  # the class's own again


@contextlib.contextmanager
def recording_outputs(layers: Mapping[str, keras.layers.Layer]) -> Iterator[dict[str, np.ndarray]]:
    """While open, what each of ``layers`` returns when called eagerly, by name, as float64 — of a
    Dense with its own activation, the product before it (where the canonical layer ends); of a
    tuple, the first element."""
    found: dict[str, np.ndarray] = {}
    names = {id(layer): name for name, layer in layers.items()}

    def seen(layer: keras.layers.Layer, call: Callable[..., Any], args: Any, kwargs: Any, output: Any) -> None:
        value = output[0] if isinstance(output, tuple | list) else output
        if isinstance(layer, keras.layers.Dense) and layer.activation is not keras.activations.linear:
            with linear(layer):
                value = call(*args, **kwargs)
        found[names[id(layer)]] = keras.ops.convert_to_numpy(keras.ops.cast(value, "float64"))

    with watching(layers.values(), seen):
        yield found


class SpecModel(keras.Model):
    """What every model adds to ``keras.Model``: its spec, where each canonical layer is
    (``layer_paths``, recorded as it builds them) and its outputs."""

    spec: ModelSpec
    layer_paths: LayerPaths = LayerPaths()
    precision: Precision = "float32"  # the dtype of its tensors, set by spec.backend.NativeBackend.build
    # Whether ``build`` creates every variable (a model whose layers are built in its own ``build``);
    # otherwise one call does, with each layer's shapes inferred as Keras does.
    builds_from_shape: ClassVar[bool] = False

    def create_variables(self) -> None:
        if self.builds_from_shape:
            self.build((None, *self.spec.input_shape))
        else:
            self(keras.ops.zeros((1, *self.spec.input_shape), dtype=self.spec.input_dtype))

    def infer(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        """The model's outputs: logits passed through the spec's output activation."""
        return output_activation(self(x, training=training), self.spec.output_activation)

    def get_config(self) -> dict[str, Any]:
        """Its spec as JSON data (:mod:`spec.config`): what Keras writes in a ``.keras`` file, from
        which :meth:`from_config` builds the model again (its weights come from the file)."""
        return {"spec": to_config(self.spec)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpecModel:
        return cls(spec_from_config(config["spec"]))  # dropout seeds start again from 0


class MLP(SpecModel):
    """Dense layers with an activation (and dropout) on each hidden one; ``call`` returns logits.

    The spec's L2 term is each Dense layer's ``kernel_regularizer``: Keras collects it in
    ``model.losses`` during the forward pass, and the train step adds it to the loss.
    """

    spec: MLPSpec
    builds_from_shape = True

    def __init__(self, spec: MLPSpec, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(name=spec.name, **kwargs)
        self.spec = spec
        hidden = [activation(a) for a in spec.activations] + [None]  # the output layer gives logits
        regularizer = keras.regularizers.L2(spec.kernel_l2) if spec.kernel_l2 else None
        self.dense = [
            keras.layers.Dense(
                units, activation=act, use_bias=spec.use_bias, kernel_regularizer=regularizer, name=f"dense_{i}"
            )
            for i, (units, act) in enumerate(zip(spec.layer_sizes[1:], hidden))
        ]
        self.dropout = [
            keras.layers.Dropout(spec.dropout, seed=seed + i, name=f"dropout_{i}") for i in range(len(hidden) - 1)
        ]
        self.layer_paths = LayerPaths({dense_name(i): ("dense", i) for i in range(len(self.dense))})

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        for layer in self.dense:
            layer.build(input_shape)
            input_shape = layer.compute_output_shape(input_shape)

    def call(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        for layer, dropout in zip(self.dense, self.dropout):
            x = dropout(layer(x), training=training)
        return self.dense[-1](x)


class Pad2D(keras.layers.Layer):
    """Constant padding of NHWC images, ((top, bottom), (left, right)): ``ZeroPadding2D`` with a
    chosen value, for max-pooling windows where padded pixels must never win (−∞)."""

    def __init__(self, pads: Pads, value: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pads, self.value = pads, value

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        return keras.ops.pad(x, ((0, 0), *self.pads, (0, 0)), constant_values=self.value)


def _keras_padding(layer: Conv2D | Pool2D, shape: tuple[int, ...]) -> tuple[Pads | None, str]:
    """Keras's own 'valid' or 'same' where it means the spec's padding; otherwise the explicit pads
    for a padding layer in front of a 'valid' window."""
    window = layer.kernel_size if isinstance(layer, Conv2D) else layer.pool_size
    size = (shape[0], shape[1])  # the input image's (height, width)
    pads = resolve_padding(layer.padding, size, window, layer.strides)
    if pads == ((0, 0), (0, 0)):
        return None, "valid"
    if pads == resolve_padding("same", size, window, layer.strides):
        return None, "same"
    return pads, "valid"


def layer_stack(
    layer: Layer, name: str, shape: tuple[int, ...], spec: MLPSpec | CNNSpec | ResNetSpec, seed: int
) -> list[keras.layers.Layer]:
    """The Keras layer(s) for one spec layer whose input has ``shape``; the one holding the spec
    layer's tensors is named ``name``, a padding layer in front ``<name>_pad``."""
    regularizer = keras.regularizers.L2(spec.kernel_l2) if spec.kernel_l2 else None
    match layer:
        case Conv2D():
            pads, mode = _keras_padding(layer, shape)
            conv = keras.layers.Conv2D(
                layer.filters,
                layer.kernel_size,
                layer.strides,
                padding=mode,
                use_bias=layer.use_bias,
                kernel_regularizer=regularizer,
                name=name,
            )
            return [conv] if pads is None else [keras.layers.ZeroPadding2D(pads, name=f"{name}_pad"), conv]
        case ConvTranspose2D():  # Keras's 'valid' and 'same' are the spec's (TensorFlow's rule)
            conv = keras.layers.Conv2DTranspose(
                layer.filters,
                layer.kernel_size,
                layer.strides,
                padding=layer.padding,
                use_bias=layer.use_bias,
                kernel_regularizer=regularizer,
                name=name,
            )
            return [conv]
        case Pool2D():
            return _pool_stack(layer, name, shape)
        case BatchNorm():
            return [batchnorm(layer, name)]
        case Act():
            return [keras.layers.Activation(activation(layer.activation), name=name)]
        case Flatten():
            return [keras.layers.Flatten(name=name)]  # NHWC: (h, w, c) order, the canonical one
        case Reshape():
            return [keras.layers.Reshape(layer.target_shape, name=name)]
        case GlobalAvgPool():
            return [keras.layers.GlobalAveragePooling2D(name=name)]
        case Dense():
            return [keras.layers.Dense(layer.units, use_bias=layer.use_bias, kernel_regularizer=regularizer, name=name)]
        case Dropout():
            return [keras.layers.Dropout(layer.rate, seed=seed, name=name)]
    raise ValueError(f"no Keras layer for {layer}")


SAME_AVERAGE_ON_TORCH = (
    "Keras on torch pads an asymmetric 'same' average pool by repeating the edge pixels, which then count in "
    "the mean (keras/src/backend/torch/nn.py, _apply_same_padding; docs/findings.md, finding 20)"
)


def _pool_stack(layer: Pool2D, name: str, shape: tuple[int, ...]) -> list[keras.layers.Layer]:
    pads, mode = _keras_padding(layer, shape)
    if layer.kind == "max":
        pool = keras.layers.MaxPooling2D(layer.pool_size, layer.strides, padding=mode, name=name)
        # (catalogue: max-pool padding)
        return [pool] if pads is None else [Pad2D(pads, float("-inf"), name=f"{name}_pad"), pool]
    # (catalogue: average-pool padding)
    if mode == "same" and layer.count_padding:  # Keras's 'same' average leaves the padding out
        pads, mode = resolve_padding("same", (shape[0], shape[1]), layer.pool_size, layer.strides), "valid"
    if mode == "same" and keras.backend.backend() == "torch":
        same = resolve_padding("same", (shape[0], shape[1]), layer.pool_size, layer.strides)
        if any(before != after for before, after in same):
            raise UnsupportedOption(EXECUTOR, "pool.padding", same, SAME_AVERAGE_ON_TORCH)
    if pads is not None and not layer.count_padding:
        raise UnsupportedOption(
            EXECUTOR, "pool.padding", pads, "AveragePooling2D leaves padding out of the mean only for 'same'"
        )
    pool = keras.layers.AveragePooling2D(layer.pool_size, layer.strides, padding=mode, name=name)
    return [pool] if pads is None else [keras.layers.ZeroPadding2D(pads, name=f"{name}_pad"), pool]


def batchnorm(layer: BatchNorm, name: str) -> keras.layers.BatchNormalization:
    """``BatchNormalization`` over the channels (last axis), momentum and epsilon from the spec."""
    if layer.running_variance != "biased":
        raise UnsupportedOption(
            EXECUTOR,
            "batchnorm.running_variance",
            layer.running_variance,
            "BatchNormalization updates its moving variance with the batch's biased variance",
            native="biased",
        )
    # (catalogue: BatchNorm epsilon)
    return keras.layers.BatchNormalization(axis=-1, momentum=layer.momentum, epsilon=layer.epsilon, name=name)


class CNN(SpecModel):
    """The spec's layers in order (``body``), each Keras layer named as its canonical layer (``conv_0`` …)."""

    spec: CNNSpec

    def __init__(self, spec: CNNSpec, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(name=spec.name, **kwargs)
        self.spec = spec
        self.body = []
        paths = {}
        for i, (name, layer, shape) in enumerate(zip(cnn_layer_names(spec), spec.layers, spec.shapes())):
            self.body += layer_stack(layer, name or f"{type(layer).__name__.lower()}_{i}", shape, spec, seed + i)
            if name is not None:
                paths[name] = ("body", len(self.body) - 1)  # the last of its stack holds its tensors
        self.layer_paths = LayerPaths(paths)

    def call(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        for layer in self.body:
            x = layer(x, training=training)
        return x


class ResidualBlockBase(keras.layers.Layer):
    """What both residual blocks hold: for each convolution of the main path its layer stack
    ``conv_<x>`` (a padding layer first where Keras's own padding differs from the spec's) and its
    BatchNorm ``bn_<x>``, and the shortcut: shortcut_conv 1×1/stride → shortcut_bn where the shape
    changes, else nothing."""

    def __init__(self, block: ResidualBlock, spec: ResNetSpec, shape: tuple[int, ...], **kwargs: Any) -> None:
        super().__init__(name=block.name.replace("/", "_"), **kwargs)
        inputs = block.path_inputs(shape)
        paths: dict[str, NativePath] = {}
        for letter, conv in block.path.items():
            conv_name, bn_name = f"conv_{letter}", f"bn_{letter}"
            stack = layer_stack(conv, conv_name, inputs[letter], spec, 0)
            setattr(self, conv_name, stack)
            setattr(self, bn_name, batchnorm(spec.batchnorm, bn_name))
            paths |= {conv_name: (conv_name, len(stack) - 1), bn_name: (bn_name,)}
        self.shortcut = []
        if block.has_shortcut_conv:
            self.shortcut = [*layer_stack(block.shortcut_conv, "shortcut_conv", shape, spec, 0)]
            self.shortcut.append(batchnorm(spec.batchnorm, "shortcut_bn"))
            last = len(self.shortcut) - 1
            paths |= {"shortcut_conv": ("shortcut", last - 1), "shortcut_bn": ("shortcut", last)}
        self.layer_paths = LayerPaths(paths)

    def conv_bn(self, letter: str, x: keras.KerasTensor, training: bool) -> keras.KerasTensor:
        """One convolution of the main path and its BatchNorm."""
        for layer in getattr(self, f"conv_{letter}"):
            x = layer(x)
        return getattr(self, f"bn_{letter}")(x, training=training)

    def join(self, out: keras.KerasTensor, x: keras.KerasTensor, training: bool) -> keras.KerasTensor:
        """The main path's output plus the (projected) input, then relu."""
        for layer in self.shortcut:
            x = layer(x, training=training)
        return keras.ops.relu(out + x)


class BasicBlock(ResidualBlockBase):
    """conv_a → bn_a → relu → conv_b → bn_b, plus the (projected) input, then relu."""

    def call(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        out = keras.ops.relu(self.conv_bn("a", x, training))
        out = self.conv_bn("b", out, training)
        return self.join(out, x, training)


class Bottleneck(ResidualBlockBase):
    """conv_a 1×1 → bn_a → relu → conv_b 3×3/stride → bn_b → relu → conv_c 1×1 (4× wider) → bn_c,
    plus the (projected) input, then relu."""

    def call(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        out = keras.ops.relu(self.conv_bn("a", x, training))
        out = keras.ops.relu(self.conv_bn("b", out, training))
        out = self.conv_bn("c", out, training)
        return self.join(out, x, training)


class ResNet(SpecModel):
    """Stem, residual blocks, global average pooling and a Dense head (the layout of
    ``keras.applications``' ResNets, with explicit padding layers where the spec pads as torch does)."""

    spec: ResNetSpec

    def __init__(self, spec: ResNetSpec, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(name=spec.name, **kwargs)
        self.spec = spec
        shapes = spec.shapes()
        self.stem = []
        paths = LayerPaths()
        shape: tuple[int, ...] = spec.input_shape
        stem_layers: tuple[Layer, ...] = spec.stem_layers  # each built alike, whatever its kind
        for part, layer in zip(("conv", "bn", "relu", "pool"), stem_layers):
            self.stem += layer_stack(layer, f"stem_{part}", shape, spec, seed)
            shape = layer_output_shape(layer, shape)
            if part in ("conv", "bn"):
                paths |= {f"stem/{part}": ("stem", len(self.stem) - 1)}  # the last of its stack
        self.stages: list[list[ResidualBlockBase]] = [[] for _ in spec.widths]
        for block in spec.blocks():
            native = (Bottleneck if block.bottleneck else BasicBlock)(block, spec, shapes[block.name])
            self.stages[block.stage].append(native)
            paths |= native.layer_paths.under(block.name, "stages", block.stage, block.index)
        self.pool = keras.layers.GlobalAveragePooling2D()
        regularizer = keras.regularizers.L2(spec.kernel_l2) if spec.kernel_l2 else None
        self.head = keras.layers.Dense(spec.num_classes, kernel_regularizer=regularizer, name="head")
        self.layer_paths = paths | {"head": ("head",)}

    def call(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        for layer in self.stem:
            x = layer(x, training=training)
        for stage in self.stages:
            for block in stage:
                x = block(x, training=training)
        return self.head(self.pool(x))


def recurrent_layer(spec: RNNSpec, return_sequences: bool, name: str) -> keras.layers.Layer:
    """The Keras layer for one recurrent layer of ``spec``, activations passed explicitly. The
    weights come from the spec, so initializer options (``unit_forget_bias`` …) play no part."""
    common = {"use_bias": True, "return_sequences": return_sequences, "name": name}
    match spec.cell:
        case "simple_rnn":
            return keras.layers.SimpleRNN(spec.hidden_size, activation="tanh", **common)
        case "lstm":
            return keras.layers.LSTM(spec.hidden_size, activation="tanh", recurrent_activation="sigmoid", **common)
        case "gru":
            return keras.layers.GRU(
                spec.hidden_size,
                activation="tanh",
                recurrent_activation="sigmoid",
                reset_after=spec.gru_reset == "after",  # (catalogue: GRU reset gate)
                **common,
            )
    raise ValueError(f"no Keras layer for cell {spec.cell!r}")


class RNN(SpecModel):
    """Stacked ``SimpleRNN`` / ``LSTM`` / ``GRU`` layers (``Bidirectional`` when the spec says so)
    and a Dense head. Only the top layer stops returning sequences, for a "last" head: Keras then
    returns each direction's final state, which is what the spec's head reads."""

    spec: RNNSpec

    def __init__(self, spec: RNNSpec, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(name=spec.name, **kwargs)
        self.spec = spec
        self.recurrent = []
        paths: dict[str, NativePath] = {}
        for index in range(spec.num_layers):
            sequences = index < spec.num_layers - 1 or spec.head != "last"
            layer = recurrent_layer(spec, sequences, name=f"rnn_{index}")
            if spec.bidirectional:
                layer = keras.layers.Bidirectional(layer, merge_mode="concat", name=f"rnn_{index}")
            self.recurrent.append(layer)
            # each direction's cell holds its tensors
            wrapped = [(f"{d}_layer",) for d in spec.directions] if spec.bidirectional else [()]
            for name, direction in zip(rnn_layer_names(spec, index), wrapped):
                paths[name] = ("recurrent", index, *direction, "cell")
        if spec.head == "attention":
            additive = spec.attention == "additive"
            self.attention = keras.layers.Dense(spec.attention_units, "tanh", name="attention") if additive else None
            self.attention_score = keras.layers.Dense(1, use_bias=False, name="attention_score")
            paths |= {"attention": ("attention",)} if additive else {}
            paths["attention_score"] = ("attention_score",)
        self.head = keras.layers.Dense(spec.output_size, name="dense_0")
        self.layer_paths = LayerPaths({**paths, "dense_0": ("head",)})

    def call(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        for layer in self.recurrent:
            x = layer(x, training=training)
        if self.spec.head == "attention":
            x = self.pool(x)
        return self.head(x)

    def pool(self, outputs: keras.KerasTensor) -> keras.KerasTensor:
        """Every step's output weighted by the softmax over the steps of its score, summed."""
        keys = outputs if self.attention is None else self.attention(outputs)
        weights = keras.ops.softmax(self.attention_score(keys), axis=1)  # (batch, time, 1)
        return keras.ops.sum(weights * outputs, axis=1)


class LearnedPositions(keras.layers.Layer):
    """A trained (seq_len, d_model) table added to the embedded tokens."""

    def __init__(self, seq_len: int, d_model: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embeddings = self.add_weight(shape=(seq_len, d_model), initializer="zeros", name="embeddings")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        return x + self.embeddings


class EncoderLayer(keras.layers.Layer):
    """Self-attention (``MultiHeadAttention``) and the FFN (two ``Dense``), each with its residual
    and ``LayerNormalization``, after (post-norm) or before (pre-norm) the sublayer."""

    def __init__(self, spec: TransformerSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pre_norm = spec.norm == "pre"
        eps = spec.layer_norm_epsilon  # (catalogue: LayerNorm epsilon)
        self.attention = keras.layers.MultiHeadAttention(
            spec.num_heads, key_dim=spec.head_dim, value_dim=spec.head_dim, dropout=0.0, use_bias=True, name="attention"
        )
        self.attention_norm = keras.layers.LayerNormalization(epsilon=eps, name="attention_norm")
        self.ffn_0 = keras.layers.Dense(spec.ff_size, activation=activation(spec.activation), name="ffn_0")
        self.ffn_1 = keras.layers.Dense(spec.d_model, name="ffn_1")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=eps, name="ffn_norm")
        # MultiHeadAttention's EinsumDense sublayers hold the canonical projections
        projections = {"query": "query_dense", "key": "key_dense", "value": "value_dense", "output": "output_dense"}
        self.layer_paths = LayerPaths(
            {f"attention/{part}": ("attention", dense) for part, dense in projections.items()}
            | {part: (part,) for part in ("attention_norm", "ffn_0", "ffn_1", "ffn_norm")}
        )

    def call(self, x: keras.KerasTensor, padding_mask: keras.KerasTensor | None) -> keras.KerasTensor:
        def attend(h: keras.KerasTensor) -> keras.KerasTensor:
            # (catalogue: padding mask)
            # value_mask hides keys only; Keras's automatic masks would also hide padded queries
            return self.attention(h, h, value_mask=padding_mask)

        def ffn(h: keras.KerasTensor) -> keras.KerasTensor:
            return self.ffn_1(self.ffn_0(h))

        if self.pre_norm:
            x = x + attend(self.attention_norm(x))
            return x + ffn(self.ffn_norm(x))
        x = self.attention_norm(x + attend(x))
        return self.ffn_norm(x + ffn(x))


FLOAT16_ATTENTION_ON_JAX_CPU = (
    "Keras's MultiHeadAttention calls jax.nn.dot_product_attention, which asks XLA:CPU for the F16_F16_F32 dot "
    "algorithm, refused under jax.jit, where Keras on JAX computes every gradient (docs/findings.md, finding 16)"
)


def attention_fails_in_float16() -> bool:
    """Whether this Keras's attention cannot run compiled in float16: on JAX on a CPU (finding 16)."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return bool(jax.default_backend() == "cpu")


class Transformer(SpecModel):
    """``Embedding``, positions, ``EncoderLayer``s, pooling and a Dense head; ``call`` takes token ids
    and returns logits."""

    spec: TransformerSpec

    def __init__(self, spec: TransformerSpec, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(name=spec.name, **kwargs)
        if self.compute_dtype == "float16" and attention_fails_in_float16():
            raise UnsupportedOption(EXECUTOR, "precision", "mixed_float16", FLOAT16_ATTENTION_ON_JAX_CPU)
        self.spec = spec
        self.embedding = keras.layers.Embedding(spec.vocab_size, spec.d_model, name="embedding")
        paths: dict[str, NativePath] = {"embedding": ("embedding",)}
        self.scale = math.sqrt(spec.d_model) if spec.scale_embedding else 1.0
        self.position_embeddings: Callable[[keras.KerasTensor], keras.KerasTensor]  # a layer, or a fixed table added
        if spec.positional == "learned":
            self.position_embeddings = LearnedPositions(spec.seq_len, spec.d_model, name="position")
            paths["position"] = ("position_embeddings",)
        else:
            table = sinusoidal_positions(spec.seq_len, spec.d_model).astype(self.compute_dtype)
            self.position_embeddings = lambda x: keras.ops.add(x, table)  # ops: the table joins any backend's tensor
        self.encoders = [EncoderLayer(spec, name=encoder_layer_name(i)) for i in range(spec.num_layers)]
        for index, encoder in enumerate(self.encoders):
            paths |= encoder.layer_paths.under(encoder_layer_name(index), "encoders", index)
        self.final_norm = None
        if spec.norm == "pre":
            self.final_norm = keras.layers.LayerNormalization(epsilon=spec.layer_norm_epsilon, name="final_norm")
            paths["final_norm"] = ("final_norm",)
        self.head = keras.layers.Dense(spec.output_size, name="dense_0")
        self.layer_paths = LayerPaths({**paths, "dense_0": ("head",)})

    def call(self, tokens: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        spec = self.spec
        padding_mask = None if spec.pad_token is None else keras.ops.not_equal(tokens, spec.pad_token)
        x = self.position_embeddings(self.embedding(tokens) * self.scale)
        for encoder in self.encoders:
            x = encoder(x, padding_mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if spec.pooling == "mean":
            if padding_mask is None:
                x = keras.ops.mean(x, axis=1)
            else:
                keep = keras.ops.expand_dims(keras.ops.cast(padding_mask, x.dtype), -1)
                x = keras.ops.sum(x * keep, axis=1) / keras.ops.sum(keep, axis=1)
        elif spec.pooling == "first":
            x = x[:, 0]
        return self.head(x)


class VAEOutput(NamedTuple):
    """What a VAE's call returns: the decoder's logits and q(z|x)'s parameters, all the loss needs."""

    logits: keras.KerasTensor
    mean: keras.KerasTensor
    log_variance: keras.KerasTensor


def logits_of(output: keras.KerasTensor | VAEOutput) -> keras.KerasTensor:
    """A model's logits from what its call returned."""
    return output.logits if isinstance(output, VAEOutput) else output


class VAE(SpecModel):
    """Encoder and decoder MLPs with the reparameterisation between them; ``call`` takes images with
    their noise ε side by side (see :class:`spec.models.VAESpec`)."""

    spec: VAESpec
    builds_from_shape = True

    def __init__(self, spec: VAESpec, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(name=spec.name, **kwargs)
        self.spec = spec
        self.encoder = MLP(spec.encoder, seed=seed)
        self.decoder = MLP(spec.decoder, seed=seed)
        self.layer_paths = self.encoder.layer_paths.under("encoder", "encoder") | self.decoder.layer_paths.under(
            "decoder", "decoder"
        )

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.encoder.build((None, self.spec.input_size))
        self.decoder.build((None, self.spec.latent_size))

    def encode(self, images: keras.KerasTensor, training: bool = False) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        """The mean and log-variance of q(z|x)."""
        mean, log_variance = keras.ops.split(self.encoder(images, training=training), 2, axis=-1)
        return mean, log_variance

    def call(self, inputs: keras.KerasTensor, training: bool = False) -> VAEOutput:
        images, noise = inputs[:, : self.spec.input_size], inputs[:, self.spec.input_size :]
        mean, log_variance = self.encode(images, training=training)
        z = mean + keras.ops.exp(0.5 * log_variance) * noise
        return VAEOutput(self.decoder(z, training=training), mean, log_variance)

    def infer(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        return keras.ops.sigmoid(self(x, training=training).logits)


class GAN(SpecModel):
    """Generator and discriminator (MLPs, or CNNs for a DCGAN); ``call`` maps latent noise to the
    generator's logits (``infer``: the samples). The training losses use both
    (:func:`impls.keras.losses.gan_loss`)."""

    spec: GANSpec | ConvGANSpec
    builds_from_shape = True

    def __init__(self, spec: GANSpec | ConvGANSpec, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(name=spec.name, **kwargs)
        self.spec = spec
        network = MODEL_CLASSES  # each network is the model of its own spec
        self.generator = network[type(spec.generator)](spec.generator, seed=seed)
        self.discriminator = network[type(spec.discriminator)](spec.discriminator, seed=seed)
        self.layer_paths = self.generator.layer_paths.under(
            "generator", "generator"
        ) | self.discriminator.layer_paths.under("discriminator", "discriminator")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        # one call each creates every layer's variables, shapes inferred as Keras does
        self.generator(keras.ops.zeros((1, self.spec.latent_size)))
        self.discriminator(keras.ops.zeros((1, *self.spec.data_shape)))

    def call(self, z: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        return self.generator(z, training=training)


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

for _model_class in set(MODEL_CLASSES.values()):  # so that keras.saving.load_model rebuilds them
    keras.saving.register_keras_serializable(package="triptych")(_model_class)
