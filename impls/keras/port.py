"""A user's ``keras.Model`` read into triptych: the spec it computes and its tensors in canonical form.

``keras.Sequential`` and functional models whose layers form a chain are read layer by layer: Dense,
Conv2D, pooling, BatchNormalization, Dropout, Flatten, Reshape, GlobalAveragePooling2D and
activations (an ``activation=`` inside a Dense or Conv2D included; softmax or sigmoid on the last
one is the output activation). Stacked SimpleRNN/LSTM/GRU layers (each ``Bidirectional`` or not)
with a Dense head on the last state become an :class:`~spec.models.RNNSpec`. A subclassed model, a
branch, a layer or option the specs cannot express raises :class:`~spec.errors.PortError` naming
the layer.

Keras keeps tensors in the canonical layouts; each source layer's weights are set on triptych's own
Keras layer for the same canonical layer, whose export converts what differs (the GRU's gate order).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
import numpy as np

from impls.keras import weights
from impls.keras.models import MODEL_CLASSES
from spec.errors import PortError
from spec.layers import (
    Act,
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    Pool2D,
    Reshape,
)
from spec.models import ModelSpec, RNNSpec
from spec.params import layer_names, rnn_layer_names
from spec.port import Imported, SequentialReader

_RECURRENT_CELLS = {keras.layers.SimpleRNN: "simple_rnn", keras.layers.LSTM: "lstm", keras.layers.GRU: "gru"}
_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")
_ACTIVATION_LAYERS: dict[type, Callable[[Any], Activation]] = {
    keras.layers.LeakyReLU: lambda layer: Activation("leaky_relu", negative_slope=float(layer.negative_slope)),
    keras.layers.ELU: lambda layer: Activation("elu", alpha=float(layer.alpha)),
}


def import_model(model: keras.Model, input_shape: tuple[int, ...], name: str | None = None) -> Imported:
    """The spec ``model`` computes on inputs of ``input_shape`` (one example, Keras's layout, which is
    the canonical one: (H, W, C) images, (T, F) sequences, (F,) vectors) and its tensors in
    canonical form. ``name`` names the spec (default: the model's name)."""
    name = name or model.name
    layers = _chain(model, tuple(input_shape), name)
    recurrent = [layer for layer in layers if isinstance(_unwrapped(layer), tuple(_RECURRENT_CELLS))]
    spec, sources = _recurrent(layers, input_shape, name) if recurrent else _sequential(layers, input_shape, name)
    target = MODEL_CLASSES[type(spec)](spec)
    target(np.zeros((1, *spec.input_shape), np.float32))  # creates its variables
    for layer, path in sources.items():
        native = weights.native_layer(target, layer)
        source = _resolve(model, path)
        try:
            native.set_weights(source.get_weights())
        except ValueError as exc:
            raise PortError(name, path, f"its weights do not fit canonical {layer}: {exc}") from exc
    assert set(sources) == set(layer_names(spec)), f"{name}: source layers {sources} for {layer_names(spec)}"
    return Imported("keras", spec, weights.export(target), sources)


def load_checkpoint(model: keras.Model, path: str | Path) -> None:
    """Load a ``.weights.h5`` (``model.save_weights``) or ``.keras`` file's weights into the user's model
    (:func:`impls.keras.weights.load_weights_file`)."""
    weights.load_weights_file(model, path)


def canonical_inputs(x: np.ndarray) -> np.ndarray:
    """Keras's layout is the canonical one."""
    return np.asarray(x, dtype=np.float32)


def source_outputs(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """A runner of the user's model in inference mode, giving what it returns."""
    return lambda x: np.asarray(model(np.asarray(x, np.float32), training=False))


def source_layer_outputs(model: keras.Model, imported: Imported) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A runner of the user's model layer by layer in inference mode giving, by canonical name, the
    output of each layer that holds a canonical one — before the activation it applies itself, as
    the canonical layer (a product) ends there."""
    by_name = {path: layer for layer, path in imported.sources.items()}

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        captured: dict[str, np.ndarray] = {}
        value = np.asarray(x, np.float32)
        for layer in _chain(model, imported.spec.input_shape, imported.spec.name):
            canonical = by_name.get(layer.name)
            if canonical is not None and hasattr(layer, "activation"):
                with _linear(layer):
                    captured[canonical] = np.asarray(layer(value, training=False))
            value = layer(value, training=False)
        return captured

    return run


# --- reading ------------------------------------------------------------------------------------


def _chain(model: keras.Model, input_shape: tuple[int, ...], name: str) -> list[keras.layers.Layer]:
    """The model's layers in order, checked to form a chain: each reads the output of the one before."""
    if not isinstance(model, keras.Sequential) and type(model).__name__ != "Functional":  # Keras's graph class
        why = (
            "a subclassed keras.Model: its call() is Python the importer cannot read; write it Sequential or functional"
        )
        raise PortError(name, type(model).__name__, why)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not model.built:
        model.build((None, *input_shape))
    declared = tuple(model.inputs[0].shape[1:]) if model.inputs else None
    if declared is not None and declared != tuple(input_shape):
        raise PortError(name, "input_shape", f"{input_shape}, but the model takes {declared}")
    previous = model.inputs[0] if model.inputs else None
    for layer in layers:
        if previous is not None and layer.input is not previous:
            raise PortError(name, layer.name, "reads another layer's output than the one before: not a chain of layers")
        previous = layer.output
    return layers


def _sequential(
    layers: list[keras.layers.Layer], input_shape: tuple[int, ...], name: str
) -> tuple[ModelSpec, dict[str, str]]:
    reader = SequentialReader(name)
    for index, layer in enumerate(layers):
        last = index == len(layers) - 1
        where = f"{layer.name} ({type(layer).__name__})"
        for spec_layer in _spec_layers(layer, where, name, last, reader):
            holds = layer.weights and not isinstance(spec_layer, Act)  # not the activation a Dense applies
            reader.add(spec_layer, where, layer.name if holds else None)
    return reader.spec(tuple(input_shape))


def _spec_layers(
    layer: keras.layers.Layer, where: str, name: str, last: bool, reader: SequentialReader
) -> Iterator[Layer]:
    """The spec layer(s) of one Keras layer: a Dense or Conv2D and the activation it applies."""
    match layer:
        case keras.layers.Dense():
            yield Dense(layer.units, use_bias=layer.use_bias)
            yield from _activation(layer.activation, where, name, last, reader)
        case keras.layers.Conv2D():
            _require(name, where, layer.data_format == "channels_last", "data_format='channels_last'")
            _require(name, where, tuple(layer.dilation_rate) == (1, 1) and layer.groups == 1, "dilation 1 and groups 1")
            yield Conv2D(layer.filters, tuple(layer.kernel_size), tuple(layer.strides), layer.padding, layer.use_bias)
            yield from _activation(layer.activation, where, name, last, reader)
        case keras.layers.MaxPooling2D() | keras.layers.AveragePooling2D():
            _require(name, where, layer.data_format == "channels_last", "data_format='channels_last'")
            kind = "max" if isinstance(layer, keras.layers.MaxPooling2D) else "avg"
            count = False if kind == "avg" and layer.padding == "same" else None  # Keras's 'same' mean leaves it out
            yield Pool2D(kind, tuple(layer.pool_size), tuple(layer.strides), layer.padding, count)
        case keras.layers.BatchNormalization():
            _require(name, where, layer.axis in (-1, len(layer.input.shape) - 1), "axis=-1 (the channels)")
            _require(name, where, layer.center and layer.scale, "center=True, scale=True")
            yield BatchNorm(float(layer.momentum), float(layer.epsilon), "biased")
        case keras.layers.Dropout():  # SpatialDropout2D and a noise_shape drop whole maps: not the spec's
            plain = type(layer) is keras.layers.Dropout and layer.noise_shape is None
            _require(name, where, plain, "a plain Dropout (no noise_shape, not spatial)")
            yield Dropout(float(layer.rate))
        case keras.layers.Flatten():
            _require(name, where, layer.data_format == "channels_last", "data_format='channels_last'")
            yield Flatten()
        case keras.layers.Reshape():
            yield Reshape(tuple(layer.target_shape))
        case keras.layers.GlobalAveragePooling2D():
            _require(
                name,
                where,
                not layer.keepdims and layer.data_format == "channels_last",
                "keepdims=False, channels last",
            )
            yield GlobalAvgPool()
        case keras.layers.Activation():
            yield from _activation(layer.activation, where, name, last, reader)
        case keras.layers.ReLU():  # a max_value, threshold or slope would change it
            plain = layer.max_value is None and layer.threshold == 0 and layer.negative_slope == 0
            options = f"max_value={layer.max_value}, threshold={layer.threshold}, negative_slope={layer.negative_slope}"
            _require(name, where, plain, f"none of its options ({options})")
            yield Act(Activation("relu"))
        case keras.layers.Softmax() if last:
            _require(name, where, layer.axis in (-1, len(layer.input.shape) - 1), "axis=-1 (the classes)")
            reader.end_with("softmax", where)
        case _ if type(layer) in _ACTIVATION_LAYERS:
            yield Act(_ACTIVATION_LAYERS[type(layer)](layer))
        case _:
            raise PortError(name, where, "not a layer the specs know")


def _activation(
    function: Callable[..., Any], where: str, name: str, last: bool, reader: SequentialReader
) -> Iterator[Layer]:
    """The spec's activation for a Keras activation function (its own defaults made explicit)."""
    kind = getattr(function, "__name__", "")
    try:
        known = keras.activations.get(kind) is function
    except ValueError:  # Keras has none of that name
        known = False
    if not known:  # a function of the user's own
        raise PortError(name, where, f"activation {function!r} is not one of keras.activations")
    if kind == "linear":
        return
    if kind in _OUTPUT_ACTIVATIONS and last:
        reader.end_with(kind, where)
        return
    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}
    match kind:
        case "relu" | "tanh" | "sigmoid":
            yield Act(Activation(kind))
        case "leaky_relu":
            yield Act(Activation(kind, negative_slope=float(defaults["negative_slope"])))
        case "elu":
            yield Act(Activation(kind, alpha=float(defaults["alpha"])))
        case "gelu":
            yield Act(Activation(kind, approximate="tanh" if defaults["approximate"] else "exact"))
        case _:
            raise PortError(name, where, f"activation {kind!r} is not one the specs know (here)")


def _require(name: str, where: str, condition: bool, what: str) -> None:
    if not condition:
        raise PortError(name, where, f"the specs express this layer only with {what}")


def _unwrapped(layer: keras.layers.Layer) -> keras.layers.Layer:
    return layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer


def _recurrent(
    layers: list[keras.layers.Layer], input_shape: tuple[int, ...], name: str
) -> tuple[RNNSpec, dict[str, str]]:
    """Stacked recurrent layers of one kind and width, all but the last returning sequences, and a
    Dense head on the last state."""
    *stack, head = layers
    if not stack or not isinstance(head, keras.layers.Dense):
        raise PortError(
            name, head.name, "a recurrent model the importer reads ends in one Dense head on the last state"
        )
    for layer in stack:
        if not isinstance(_unwrapped(layer), tuple(_RECURRENT_CELLS)):
            why = "a recurrent model the importer reads is recurrent layers, then one Dense head"
            raise PortError(name, f"{layer.name} ({type(layer).__name__})", why)
    first = _unwrapped(stack[0])
    bidirectional = isinstance(stack[0], keras.layers.Bidirectional)
    for index, layer in enumerate(stack):
        if isinstance(layer, keras.layers.Bidirectional) != bidirectional:
            raise PortError(name, layer.name, "the spec's recurrent layers are all bidirectional or none")
        if bidirectional:
            _require(name, f"{layer.name} (Bidirectional)", layer.merge_mode == "concat", "merge_mode='concat'")
        directions = [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]
        for backward, cell in enumerate(directions):
            where = f"{layer.name} ({type(cell).__name__})"
            _check_recurrent(cell, where, first, index == len(stack) - 1, bool(backward), name)
    activation = head.activation.__name__
    if activation not in ("linear", *_OUTPUT_ACTIVATIONS):
        raise PortError(
            name, head.name, f"activation {activation!r}: the head's output activation is softmax, sigmoid or none"
        )
    gru_reset = ("after" if first.reset_after else "before") if isinstance(first, keras.layers.GRU) else "after"
    spec = RNNSpec(
        name, _RECURRENT_CELLS[type(first)], input_shape[-1], first.units, input_shape[0], head.units, activation,
        num_layers=len(stack), bidirectional=bidirectional, gru_reset=gru_reset,
    )  # fmt: skip
    sources = {"dense_0": head.name}
    for index, layer in enumerate(stack):
        parts = [f"{layer.name}.{d}_layer" for d in spec.directions] if bidirectional else [layer.name]
        sources |= dict(zip(rnn_layer_names(spec, index), parts))
    return spec, sources


def _check_recurrent(cell: Any, where: str, first: Any, top: bool, backward: bool, name: str) -> None:
    """One recurrent layer (a direction of a Bidirectional: ``backward``) against the spec's layers."""
    if type(cell) is not type(first) or cell.units != first.units:
        raise PortError(name, where, "the spec's recurrent layers are all of one kind and width")
    if isinstance(cell, keras.layers.GRU):
        _require(name, where, cell.reset_after == first.reset_after, "one reset_after for every layer")
    _require(name, where, cell.return_sequences != top, "sequences between layers, the last state at the top")
    _require(name, where, cell.use_bias and not cell.stateful, "use_bias=True, stateful=False")
    _require(name, where, cell.go_backwards == backward, "go_backwards only in a Bidirectional's backward layer")
    _require(name, where, cell.dropout == 0 and cell.recurrent_dropout == 0, "no dropout")
    _require(name, where, cell.activation is keras.activations.tanh, "activation='tanh'")
    if not isinstance(cell, keras.layers.SimpleRNN):
        _require(name, where, cell.recurrent_activation is keras.activations.sigmoid, "recurrent_activation='sigmoid'")


def _resolve(model: keras.Model, path: str) -> keras.layers.Layer:
    """The source layer at ``path`` (a layer's name, then attributes: ``bi.forward_layer``), or a
    recurrent layer's cell, where triptych's own model keeps the tensors."""
    name, *attributes = path.split(".")
    layer: Any = model.get_layer(name)
    for attribute in attributes:
        layer = getattr(layer, attribute)
    recurrent = isinstance(layer, tuple(_RECURRENT_CELLS))
    return layer.cell if recurrent else layer  # type: ignore[no-any-return]


@contextmanager
def _linear(layer: keras.layers.Layer) -> Iterator[None]:
    """``layer`` without its own activation, while open."""
    activation = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield
    finally:
        layer.activation = activation
