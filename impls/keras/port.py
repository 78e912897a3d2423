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
from typing import Any, cast

import keras
import numpy as np

from impls.keras import weights
from impls.keras.models import MODEL_CLASSES, linear, recording_outputs, watching
from spec.errors import PortError
from spec.layer_paths import dotted, point_holders, resolve
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
from spec.models import CNNSpec, ModelSpec, RNNSpec, TransformerSpec
from spec.params import layer_names, rnn_layer_names
from spec.port import (
    Imported,
    SequentialReader,
    SourceLayersRun,
    SourceRun,
    dropout_note,
    encoder_roles,
    indexes_positions,
    refuse_shared_calls,
    require_layer,
    transformer_form,
)

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
    if any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in _all_layers(model)):
        return _transformer(model, tuple(input_shape), name)
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
    """Keras's layout is the canonical one (the dtype stays as given)."""
    return np.asarray(x)


def source_outputs(model: keras.Model) -> SourceRun:
    """A runner of the user's model giving what it returns, in inference or training mode
    (:func:`_in_mode`)."""

    def run(x: np.ndarray, *, training: bool = False) -> np.ndarray:
        with _in_mode(model, training):
            return keras.ops.convert_to_numpy(model(_as_inputs(x), training=training))  # detached on torch

    return run


@contextmanager
def _in_mode(model: keras.Model, training: bool) -> Iterator[None]:
    """While open, for a ``training`` call: every Dropout (a MultiHeadAttention's own too) at rate 0,
    and the model's non-trainable variables (BatchNormalization's moving statistics) put back after."""
    if not training:
        yield
        return
    dropouts = [(layer, layer.rate) for layer in _all_layers(model) if isinstance(layer, keras.layers.Dropout)]
    statistics = [(variable, keras.ops.convert_to_numpy(variable.value)) for variable in model.non_trainable_variables]
    for layer, _ in dropouts:
        layer.rate = 0.0
    try:
        yield
    finally:
        for layer, rate in dropouts:
            layer.rate = rate
        for variable, value in statistics:
            variable.assign(value)


def _as_inputs(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.int32 if np.issubdtype(x.dtype, np.integer) else np.float32)


def source_layer_outputs(model: keras.Model, imported: Imported) -> SourceLayersRun:
    """A runner of the user's model (in either mode, as :func:`source_outputs`) giving, by canonical
    name, the output of each layer that holds a canonical one — before the activation it applies
    itself, as the canonical layer (a product) ends there; for a model that is not sequential, of
    each layer that holds one of :func:`spec.layer_paths.observed_points`: a recurrent layer, the
    head, but no encoder layer (its canonical layers are read from the Keras layers they are, not
    from a block of the user's that holds them)."""
    if not isinstance(imported.spec, CNNSpec):
        holders = point_holders(imported.spec, {layer: dotted(path) for layer, path in imported.sources.items()})
        by_name = {layer.name: layer for layer in _all_layers(model)}  # nested in the user's own layers too
        layers = {point: resolve(by_name[str(path[0])], path[1:]) for point, path in holders.items()}

        def observed(x: np.ndarray, *, training: bool = False) -> dict[str, np.ndarray]:
            with recording_outputs(layers) as found, _in_mode(model, training):
                model(_as_inputs(x), training=training)
            return found

        return observed
    by_name = {path: layer for layer, path in imported.sources.items()}

    def run(x: np.ndarray, *, training: bool = False) -> dict[str, np.ndarray]:
        captured: dict[str, np.ndarray] = {}
        value = np.asarray(x, np.float32)
        with _in_mode(model, training):
            for layer in _chain(model, imported.spec.input_shape, imported.spec.name):
                canonical = by_name.get(layer.name)
                if canonical is not None and hasattr(layer, "activation"):
                    with linear(layer):
                        captured[canonical] = keras.ops.convert_to_numpy(layer(value, training=training))
                value = layer(value, training=training)
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
    called: list[str] = []  # a layer called twice looks like one in model.layers
    with watching(layers, lambda layer, *_: called.append(layer.name)):
        model(np.zeros((1, *input_shape), np.float32), training=False)
    refuse_shared_calls(name, called)
    previous = model.inputs[0] if model.inputs else None
    for layer in layers:
        if isinstance(layer, keras.layers.Masking):  # Keras passes its mask beside the chain, to every layer after
            why = "a mask: the specs' recurrent layers run every step, with no masking (pad on the left, or trim)"
            raise PortError(name, f"{layer.name} (Masking)", why)
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
            require_layer(name, where, layer.data_format == "channels_last", "data_format='channels_last'")
            require_layer(
                name, where, tuple(layer.dilation_rate) == (1, 1) and layer.groups == 1, "dilation 1 and groups 1"
            )
            yield Conv2D(layer.filters, tuple(layer.kernel_size), tuple(layer.strides), layer.padding, layer.use_bias)
            yield from _activation(layer.activation, where, name, last, reader)
        case keras.layers.MaxPooling2D() | keras.layers.AveragePooling2D():
            require_layer(name, where, layer.data_format == "channels_last", "data_format='channels_last'")
            kind = "max" if isinstance(layer, keras.layers.MaxPooling2D) else "avg"
            count = False if kind == "avg" and layer.padding == "same" else None  # Keras's 'same' mean leaves it out
            yield Pool2D(kind, tuple(layer.pool_size), tuple(layer.strides), layer.padding, count)
        case keras.layers.BatchNormalization():
            require_layer(name, where, layer.axis in (-1, len(layer.input.shape) - 1), "axis=-1 (the channels)")
            require_layer(name, where, layer.center and layer.scale, "center=True, scale=True")
            yield BatchNorm(float(layer.momentum), float(layer.epsilon), "biased")
        case keras.layers.Dropout():  # SpatialDropout2D and a noise_shape drop whole maps: not the spec's
            plain = type(layer) is keras.layers.Dropout and layer.noise_shape is None
            require_layer(name, where, plain, "a plain Dropout (no noise_shape, not spatial)")
            yield Dropout(float(layer.rate))
        case keras.layers.Flatten():
            require_layer(name, where, layer.data_format == "channels_last", "data_format='channels_last'")
            yield Flatten()
        case keras.layers.Reshape():
            yield Reshape(tuple(layer.target_shape))
        case keras.layers.GlobalAveragePooling2D():
            require_layer(
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
            require_layer(name, where, plain, f"none of its options ({options})")
            yield Act(Activation("relu"))
        case keras.layers.Softmax() if last:
            require_layer(name, where, layer.axis in (-1, len(layer.input.shape) - 1), "axis=-1 (the classes)")
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
            require_layer(name, f"{layer.name} (Bidirectional)", layer.merge_mode == "concat", "merge_mode='concat'")
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
        require_layer(name, where, cell.reset_after == first.reset_after, "one reset_after for every layer")
    require_layer(name, where, cell.return_sequences != top, "sequences between layers, the last state at the top")
    require_layer(name, where, cell.use_bias and not cell.stateful, "use_bias=True, stateful=False")
    require_layer(name, where, cell.go_backwards == backward, "go_backwards only in a Bidirectional's backward layer")
    require_layer(name, where, cell.dropout == 0 and cell.recurrent_dropout == 0, "no dropout")
    require_layer(name, where, cell.activation is keras.activations.tanh, "activation='tanh'")
    if not isinstance(cell, keras.layers.SimpleRNN):
        require_layer(
            name, where, cell.recurrent_activation is keras.activations.sigmoid, "recurrent_activation='sigmoid'"
        )


def _resolve(model: keras.Model, path: str) -> keras.layers.Layer:
    """The source layer at ``path`` (a layer's name, then attributes: ``bi.forward_layer``), or a
    recurrent layer's cell, where triptych's own model keeps the tensors."""
    name, *attributes = path.split(".")
    layer: Any = model.get_layer(name)
    for attribute in attributes:
        layer = getattr(layer, attribute)
    recurrent = isinstance(layer, tuple(_RECURRENT_CELLS))
    return layer.cell if recurrent else layer  # type: ignore[no-any-return]


# --- Transformers ---------------------------------------------------------------------------------


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer inside ``model``, nested ones too, in the order they were made (Keras's own walk)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def _transformer(model: keras.Model, input_shape: tuple[int, ...], name: str) -> Imported:
    """A token ``Embedding``, positions (a second ``Embedding``, a layer holding a learned table, or
    fixed sinusoidal positions), encoder blocks of ``MultiHeadAttention``, two ``LayerNormalization``
    and two ``Dense`` each (post-norm; pre-norm with one more LayerNormalization at the end), and a
    ``Dense`` head, their roles read from the order the model calls them in
    (:func:`spec.port.encoder_roles`) — as Keras's "Text classification with Transformer" example
    writes its ``TransformerBlock``, a functional or subclassed model alike. What ``call`` does
    between them is read from what the model computes (:func:`spec.port.transformer_form`)."""
    if len(input_shape) != 1:
        raise PortError(name, "input_shape", f"{input_shape}: (T,), token ids, for a Transformer")
    seq_len = input_shape[0]
    calls = _calls(model, seq_len)
    layers = _all_layers(model)
    embeddings = [layer for layer, _ in calls if isinstance(layer, keras.layers.Embedding)]
    attentions = [layer for layer, _ in calls if isinstance(layer, keras.layers.MultiHeadAttention)]
    norms = [layer for layer, _ in calls if isinstance(layer, keras.layers.LayerNormalization)]
    denses = [layer for layer, _ in calls if type(layer) is keras.layers.Dense]
    refuse_shared_calls(name, [layer.name for layer, _ in calls])
    # the token embedding reads the model's input; a positions Embedding reads 0, 1, …, T − 1
    indexed_by_position = [
        layer
        for layer, value in calls
        if isinstance(layer, keras.layers.Embedding) and indexes_positions(value, seq_len)
    ]
    embeddings = [layer for layer in embeddings if layer not in indexed_by_position] + indexed_by_position
    if not embeddings:
        raise PortError(name, "model", "a Transformer starts with an Embedding of its tokens")
    token = embeddings[0]
    d_model = token.output_dim
    kinds = ("MultiHeadAttention", "LayerNormalization", "Dense")
    roles = encoder_roles(name, attentions, norms, denses, lambda layer: layer.name, kinds)
    head = roles["dense_0"]
    positions = _learned_positions(layers, embeddings, seq_len, d_model, name)
    fields = _encoder_fields(attentions, norms, denses[:-1], d_model, name)
    base = TransformerSpec(
        name, token.input_dim, seq_len, d_model, output_size=head.units, output_activation="linear",
        positional="sinusoidal" if positions is None else "learned", **fields,
    )  # fmt: skip
    target = MODEL_CLASSES[TransformerSpec](base)
    target(np.zeros((1, seq_len), np.int32))
    pairs = {"embedding": (target.embedding, token)} | {
        role: (_native(target, role), source) for role, source in roles.items()
    }
    read = {id(v) for _, source in pairs.values() for v in source.weights}
    for native, source in pairs.values():
        try:
            native.set_weights(source.get_weights())
        except ValueError as exc:
            raise PortError(name, source.name, f"its weights do not fit triptych's {native.name}: {exc}") from exc
    if positions is not None:
        layer, table = positions
        target.position_embeddings.embeddings.assign(table[:seq_len])
        read |= {id(v) for v in layer.weights}
    unread = [variable.path for variable in model.weights if id(variable) not in read]
    if unread:
        raise PortError(name, ", ".join(unread), "weights the spec's Transformer has no place for")
    sources = {
        layer: pairs[layer.rsplit("/", 1)[0] if "/attention/" in layer else layer][1].name
        for layer in layer_names(base)
        if layer != "position"
    }
    if positions is not None:
        sources["position"] = positions[0].name
    params = weights.export(target)
    form = transformer_form(base, params, 0, source_outputs(model))
    rates = [layer.rate for layer in layers if isinstance(layer, keras.layers.Dropout)]
    rates += [layer.dropout for layer in attentions]
    return Imported("keras", form, params, sources, dropout_note(rates))


def _calls(model: keras.Model, seq_len: int) -> list[tuple[keras.layers.Layer, Any]]:
    """The Embedding, MultiHeadAttention, LayerNormalization and Dense layers ``model`` calls on a
    batch of token ids, in the order it calls them, each with its first input: the roles of the
    layers are read from the computation, not from names or the order Keras tracks them in."""
    kinds = (keras.layers.Embedding, keras.layers.MultiHeadAttention, keras.layers.LayerNormalization)
    watched = [layer for layer in _all_layers(model) if isinstance(layer, kinds) or type(layer) is keras.layers.Dense]
    calls: list[tuple[keras.layers.Layer, Any]] = []
    with watching(watched, lambda layer, _, args, __, ___: calls.append((layer, args[0]))):
        model(np.zeros((1, seq_len), np.int32), training=False)  # also creates every variable
    return calls


def _native(target: keras.Model, role: str) -> keras.layers.Layer:
    """triptych's Keras layer for a role of :func:`spec.port.encoder_roles`: a canonical layer's, or
    for an attention the ``MultiHeadAttention`` that holds its four projections."""
    if role.endswith("/attention"):
        return cast(keras.layers.Layer, resolve(target, target.layer_paths[f"{role}/query"][:-1]))
    return weights.native_layer(target, role)


def _learned_positions(
    layers: list[keras.layers.Layer],
    embeddings: list[keras.layers.Embedding],
    seq_len: int,
    d_model: int,
    name: str,
) -> tuple[keras.layers.Layer, np.ndarray] | None:
    """The layer holding a learned table of positions and the table: a second ``Embedding``, or a
    layer of the user's own with one (…, ≥ seq_len, d_model) weight; ``None`` for none (fixed
    positions, judged by what the model computes)."""
    if len(embeddings) > 2:
        raise PortError(name, ", ".join(e.name for e in embeddings), "one Embedding of positions at most")
    known = (keras.layers.Embedding, keras.layers.MultiHeadAttention, keras.layers.LayerNormalization)
    inside_attention = {
        id(part)
        for layer in layers
        if isinstance(layer, keras.layers.MultiHeadAttention)
        for part in _all_layers(layer)
    }
    candidates = [
        (layer, keras.ops.convert_to_numpy(variable).reshape(-1, d_model))
        for layer in layers
        if not isinstance(layer, known) and type(layer) is not keras.layers.Dense and id(layer) not in inside_attention
        for variable in layer._trainable_variables  # its own, not its sub-layers'
        if len(variable.shape) >= 2 and variable.shape[-1] == d_model
    ]
    candidates += [(layer, keras.ops.convert_to_numpy(layer.embeddings)) for layer in embeddings[1:]]
    if len(candidates) > 1:
        raise PortError(name, ", ".join(layer.name for layer, _ in candidates), "one table of positions at most")
    if not candidates:
        return None
    layer, table = candidates[0]
    require_layer(name, layer.name, table.shape[0] >= seq_len, f"at least {seq_len} positions")
    return layer, table


def _encoder_fields(
    attentions: list[keras.layers.Layer],
    norms: list[keras.layers.Layer],
    ffn: list[keras.layers.Layer],
    d_model: int,
    name: str,
) -> dict[str, Any]:
    """The spec's fields of the encoder blocks, which must all be alike and of a form it knows."""
    heads_forms, ffn_forms = set(), set()
    for attention in attentions:
        value_dim = attention.value_dim or attention.key_dim
        require_layer(
            name,
            attention.name,
            value_dim == attention.key_dim and attention.use_bias and attention._output_shape is None
            and attention._attention_axes in (None, (1,)),
            "value_dim = key_dim, biases, the output back to d_model, attention over the sequence",
        )  # fmt: skip
        heads_forms.add((attention.num_heads, attention.key_dim))
    for norm in norms:
        require_layer(
            name, norm.name, norm.center and norm.scale and norm.axis in (-1, [-1], 2, [2]), "scale, shift, axis -1"
        )
    for inner, outer in zip(ffn[::2], ffn[1::2], strict=True):
        require_layer(
            name,
            outer.name,
            outer.units == d_model and outer.activation is keras.activations.linear,
            f"{d_model} units, linear",
        )
        require_layer(name, inner.name, inner.use_bias and outer.use_bias, "biases")
        ffn_forms.add((inner.units, _ffn_activation(inner, name)))
    epsilons = {norm.epsilon for norm in norms}
    if len(heads_forms) != 1 or len(ffn_forms) != 1 or len(epsilons) != 1:
        raise PortError(name, "encoder", "blocks of different forms (heads, FFN, LayerNorm ε): the spec's are alike")
    (heads, key_dim), (ff_size, activation) = heads_forms.pop(), ffn_forms.pop()
    return {
        "num_heads": heads, "ff_size": ff_size, "num_layers": len(attentions), "activation": activation,
        "norm": "pre" if len(norms) % 2 else "post", "layer_norm_epsilon": float(epsilons.pop()),
        "key_dim": None if heads * key_dim == d_model else key_dim,
    }  # fmt: skip


def _ffn_activation(layer: keras.layers.Dense, name: str) -> str:
    kind = getattr(layer.activation, "__name__", "")
    if kind == "relu" and layer.activation is keras.activations.relu:
        return "relu"
    if kind == "gelu" and layer.activation is keras.activations.gelu:
        defaults = inspect.signature(layer.activation).parameters
        return f"gelu({'tanh' if defaults['approximate'].default else 'exact'})"
    raise PortError(name, layer.name, f"activation {kind or layer.activation!r}: the spec's FFN takes relu or gelu")
