"""A user's Flax NNX module read into triptych: the spec it computes and its tensors in canonical form.

An ``nnx.Sequential`` or an attribute-style module whose ``__call__`` chains layers and functions
(``nnx.relu``, ``x.reshape(x.shape[0], -1)``, ``partial(nnx.avg_pool, ...)``) is read from its
jaxpr: each of its layers (Linear, Conv, BatchNorm, Dropout) is traced as a named call of its own,
and the operations between them are matched against the jaxprs of the functions the specs know,
traced here on the same shapes (so the match follows the installed JAX). Anything else — a residual
sum, a layer or function the specs do not know — raises :class:`~spec.errors.PortError` naming the
layer or the operation.

Flax keeps tensors in the canonical layouts (a transposed conv's kernel apart, which the specs read
through :mod:`impls.jax.weights`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from functools import cache, partial
from itertools import product
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impls.jax import weights
from impls.jax.models import recorded_outputs
from spec.errors import PortError, SpecError
from spec.layer_paths import dotted, point_holders
from spec.layers import Act, Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, Layer, Padding, Pool2D
from spec.models import CNNSpec, ModelSpec, RNNSpec, TransformerSpec
from spec.params import param_specs, rnn_layer_names
from spec.port import (
    Imported,
    SequentialReader,
    SourceLayersRun,
    SourceRun,
    closest_form,
    dropout_note,
    encoder_roles,
    indexes_positions,
    refuse_shared_calls,
    require_layer,
    transformer_form,
)

LEAVES = (nnx.Linear, nnx.Conv, nnx.BatchNorm, nnx.Dropout)  # each traced as a call of its own
_CALL = "triptych_layer_"  # the name of a leaf's traced call: _CALL + its index


def import_model(model: nnx.Module, input_shape: tuple[int, ...], name: str | None = None) -> Imported:
    """The spec ``model`` computes on inputs of ``input_shape`` (one example, Flax's layout, which is
    the canonical one: (H, W, C) images, (F,) vectors) and its tensors in canonical form."""
    name = name or type(model).__name__
    nodes = [node for _, node in nnx.iter_graph(model)]
    reader: Callable[[nnx.Module, tuple[int, ...], str], tuple[ModelSpec, dict[str, str]]]
    if any(isinstance(node, nnx.MultiHeadAttention) for node in nodes):
        reader = _transformer
    elif any(isinstance(node, nnx.RNN) for node in nodes):
        reader = _recurrent
    else:
        reader = _read
    spec, sources = reader(model, tuple(input_shape), name)
    notes: tuple[str, ...] = ()
    grus = [path for path in sources.values() if isinstance(_at(model, path), nnx.GRUCell)]
    if grus:
        notes += (f"{', '.join(grus)}: nnx.GRUCell has no recurrent bias; the port's is zero, and training moves it",)
    if isinstance(spec, TransformerSpec):
        nodes = [node for _, node in nnx.iter_graph(model)]
        rates = [node.rate for node in nodes if isinstance(node, nnx.Dropout)]
        notes += dropout_note(rates + [node.dropout_rate for node in nodes if isinstance(node, nnx.MultiHeadAttention)])
    return Imported("jax", spec, _params(model, spec, sources), sources, notes)


def _params(model: nnx.Module, spec: ModelSpec, sources: dict[str, str]) -> dict[str, np.ndarray]:
    """Each canonical tensor of ``spec``, read from the source layer at ``sources``' path: a
    recurrent one from where its cell keeps it (:func:`impls.jax.weights.recurrent_variable`), an
    ``nnx.GRUCell``'s recurrent bias, which it does not have, as zeros."""
    params = {}
    for tensor, info in param_specs(spec).items():
        layer, variable = tensor.rsplit("/", 1)
        source = _at(model, sources[layer])
        if isinstance(source, nnx.GRUCell) and variable == "bias":  # (input bias, recurrent bias)
            assert source.dense_i.bias is not None  # nnx.GRUCell's dense_i has a bias
            input_bias = np.asarray(source.dense_i.bias.get_value())
            params[tensor] = np.stack([input_bias, np.zeros_like(input_bias)])
        elif info.is_recurrent:
            params[tensor] = weights.read_variable(
                _at(source, ".".join(weights.recurrent_variable(info.gates, variable))), info
            )
        else:
            params[tensor] = weights.read_variable(getattr(source, weights.VARIABLES[variable]), info)
    return params


def load_checkpoint(model: nnx.Module, path: str | Path) -> None:
    """Load the parameters and batch statistics saved as msgpack (:func:`impls.jax.weights.save_state_file`)."""
    weights.load_state_file(model, path)


def canonical_inputs(x: np.ndarray) -> np.ndarray:
    """Flax's layout is the canonical one (the dtype stays as given)."""
    return np.asarray(x)


def _as_inputs(x: np.ndarray) -> jax.Array:
    """Token ids as int32, anything else as float32."""
    x = np.asarray(x)
    return jnp.asarray(x, jnp.int32 if np.issubdtype(x.dtype, np.integer) else jnp.float32)


def source_outputs(model: nnx.Module) -> SourceRun:
    """A runner of the user's module giving what it returns, in evaluation or training mode (:func:`_in_mode`)."""

    def run(x: np.ndarray, *, training: bool = False) -> np.ndarray:
        with _in_mode(model, training):
            return np.asarray(model(_as_inputs(x)))

    return run


def source_layer_outputs(model: nnx.Module, imported: Imported) -> SourceLayersRun:
    """A runner of the user's module (in either mode, as :func:`source_outputs`) giving, by canonical
    name, what each of its layers that holds a canonical one returns — for a model that is not
    sequential, each layer that holds one of :func:`spec.layer_paths.observed_points`."""
    paths = {layer: dotted(path) for layer, path in imported.sources.items()}
    if not isinstance(imported.spec, CNNSpec):
        paths = point_holders(imported.spec, paths)

    def run(x: np.ndarray, *, training: bool = False) -> dict[str, np.ndarray]:
        with _in_mode(model, training):
            return recorded_outputs(model, paths, lambda: model(_as_inputs(x)))

    return run


# --- reading ------------------------------------------------------------------------------------


def _leaves(model: nnx.Module, kinds: tuple[type[nnx.Module], ...] = LEAVES) -> list[tuple[str, nnx.Module]]:
    """The layers of the module the reader traces as calls of their own, by path ("conv1", "layers.0")."""
    found: list[tuple[str, nnx.Module]] = []
    for path, node in nnx.iter_graph(model):
        if isinstance(node, kinds) and path:
            found.append((".".join(map(str, path)), cast(nnx.Module, node)))
    # a layer inside another (an LSTM cell's Linears) is called by it, not by the module
    return [(path, node) for path, node in found if not any(path.startswith(f"{other}.") for other, _ in found)]


def _at(model: nnx.Module, path: str) -> Any:
    node: Any = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _set(model: nnx.Module, path: str, value: object) -> None:
    *parents, last = path.split(".")
    parent: Any = _at(model, ".".join(parents)) if parents else model
    if last.isdigit():
        parent[int(last)] = value
    else:
        setattr(parent, last, value)


# The flags nnx's model.eval() sets on the modules that have them (Dropout, BatchNorm, attention)
_MODE_FLAGS = ("deterministic", "use_running_average")
_DROPOUT_RATES = {nnx.Dropout: "rate", nnx.MultiHeadAttention: "dropout_rate"}


@contextmanager
def _in_mode(model: nnx.Module, training: bool = False) -> Iterator[None]:
    """``model`` in evaluation mode (``model.eval()``) while open — or ``training``, in training mode
    (``model.train()``) with every dropout at rate 0 — then in the mode it was in, with its batch
    statistics the very values they were (a NumPy array the user set included)."""
    graph = [node for _, node in nnx.iter_graph(model)]
    modules = [node for node in graph if isinstance(node, nnx.Module)]
    flags = [(node, flag, getattr(node, flag)) for node in modules for flag in _MODE_FLAGS if hasattr(node, flag)]
    rates = [
        (node, rate, getattr(node, rate)) for node in modules for kind, rate in _DROPOUT_RATES.items()
        if training and isinstance(node, kind)
    ]  # fmt: skip
    statistics = [(node, node.get_value()) for node in graph if isinstance(node, nnx.BatchStat)]
    for variable, value in statistics:  # JAX copies, which an update replaces: a NumPy array it would
        variable.set_value(jnp.array(value))  # write into in place (docs/findings.md, finding 18)
    for node, rate, _ in rates:
        setattr(node, rate, 0.0)
    if training:
        model.train()
    else:
        model.eval()
    try:
        yield
    finally:
        for node, attribute, value in flags + rates:
            setattr(node, attribute, value)
        for variable, value in statistics:
            variable.set_value(value)


class _Recorder:
    """A layer that reports each call (its first input) and is otherwise the layer: attribute reads
    (``embed.embedding[...]``) pass through to it; ``embed.attend(...)``, a second use of its table
    (weights tied), is reported to ``on_attend``."""

    def __init__(self, layer: nnx.Module, on_call: Callable[[Any], None], on_attend: Callable[[], None]) -> None:
        self._layer, self._on_call, self._on_attend = layer, on_call, on_attend

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._on_call(args[0] if args else next(iter(kwargs.values()), None))
        return self._layer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "attend":
            self._on_attend()
        return getattr(self._layer, name)


def _calls(
    model: nnx.Module, kinds: tuple[type[nnx.Module], ...], x: jax.Array, name: str
) -> list[tuple[str, nnx.Module, Any]]:
    """The layers of ``kinds`` that ``model`` calls on ``x`` in evaluation mode, in the order it calls
    them, each with its path and first input; a failing call is a :class:`PortError`."""
    calls: list[tuple[str, nnx.Module, Any]] = []
    tied: list[str] = []

    def recording(path: str, layer: nnx.Module) -> Callable[..., Any]:
        return _Recorder(layer, lambda value: calls.append((path, layer, value)), lambda: tied.append(path))

    try:
        with _in_mode(model), _replaced(model, recording, kinds):
            model(x)
    except Exception as exc:  # a Python error in __call__, a shape mismatch: its own message names it
        raise PortError(name, "__call__", f"running it failed ({type(exc).__name__}: {exc})") from exc
    if tied:
        why = "its table is also read by .attend() (weights tied to a head), which no spec has: give the head its own"
        raise PortError(name, tied[0], f"{why} nnx.Linear")
    return calls


@contextmanager
def _replaced(
    model: nnx.Module,
    wrap: Callable[[str, nnx.Module], Callable[..., Any]],
    kinds: tuple[type[nnx.Module], ...] = LEAVES,
) -> Iterator[None]:
    """Each traced layer (of ``kinds``) replaced by ``wrap(path, layer)`` while open, then put back."""
    leaves = _leaves(model, kinds)
    try:
        for path, leaf in leaves:
            _set(model, path, wrap(path, leaf))
        yield
    finally:
        for path, leaf in leaves:
            _set(model, path, leaf)


def _read(model: nnx.Module, input_shape: tuple[int, ...], name: str) -> tuple[Any, dict[str, str]]:
    leaves = _leaves(model)
    index = {path: i for i, (path, _) in enumerate(leaves)}

    def named(path: str, leaf: nnx.Module) -> Callable[..., Any]:
        def call(value: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
            def layer(inner: jax.Array) -> jax.Array:
                return leaf(inner, *args, **kwargs)

            layer.__name__ = f"{_CALL}{index[path]}"
            return jax.jit(layer)(value)

        return call

    try:
        with _in_mode(model), _replaced(model, named):
            jaxpr = jax.make_jaxpr(lambda x: model(x))(jnp.zeros((2, *input_shape), jnp.float32)).jaxpr
    except Exception as exc:  # a Python error in __call__, a shape mismatch: JAX's own message names it
        raise PortError(name, "__call__", f"tracing it failed ({type(exc).__name__}: {exc})") from exc
    reader = SequentialReader(name)
    _read_equations(jaxpr, leaves, reader, name)
    return reader.spec(input_shape)


@dataclass(frozen=True)
class _Function:
    """A function the specs know, as the operations JAX traces it to, and the spec layer it is."""

    label: str
    labels: tuple[str, ...]
    layer: Callable[[Sequence[Any]], Layer | None]  # from the matched equations; None: the output activation


def _label(eqn: Any) -> str:
    """An equation's primitive, with the name of the function a call traces (``jit:leaky_relu``)."""
    primitive = eqn.primitive.name
    if primitive in ("jit", "pjit"):
        return f"jit:{eqn.params['name']}"
    if primitive == "custom_jvp_call":
        inner = eqn.params["call_jaxpr"].jaxpr.eqns
        return f"custom_jvp:{inner[0].params.get('name', '') if len(inner) == 1 else ''}"
    return primitive


def _labels(function: Callable[[jax.Array], jax.Array], shape: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(_label(eqn) for eqn in jax.make_jaxpr(function)(jnp.zeros(shape, jnp.float32)).jaxpr.eqns)


@cache  # traced once per shape: each operation between layers asks for them
def _functions(shape: tuple[int, ...]) -> list[_Function]:
    """The functions the specs know, traced on inputs of ``shape``: longest first, so that a GELU's
    multiplications are not read as something shorter."""

    def literal(eqns: Sequence[Any], at: int) -> float:
        return float(eqns[0].invars[at].val)

    def elu_alpha(eqns: Sequence[Any]) -> float:
        inner = eqns[0].params["jaxpr"].jaxpr.eqns
        return next(float(e.invars[0].val) for e in inner if e.primitive.name == "mul" and hasattr(e.invars[0], "val"))

    def act(kind: str, **options: Any) -> Callable[[Sequence[Any]], Layer]:
        return lambda eqns: Act(Activation(kind, **options))

    functions = [
        _Function("softmax", _labels(lambda x: jax.nn.softmax(x, axis=-1), shape), lambda eqns: None),
        _Function(
            "gelu(tanh)", _labels(partial(jax.nn.gelu, approximate=True), shape), act("gelu", approximate="tanh")
        ),
        _Function(
            "gelu(exact)", _labels(partial(jax.nn.gelu, approximate=False), shape), act("gelu", approximate="exact")
        ),
        _Function("relu", _labels(jax.nn.relu, shape), act("relu")),
        _Function(
            "leaky_relu",
            _labels(jax.nn.leaky_relu, shape),
            lambda eqns: Act(Activation("leaky_relu", negative_slope=literal(eqns, 1))),
        ),
        _Function("elu", _labels(jax.nn.elu, shape), lambda eqns: Act(Activation("elu", alpha=elu_alpha(eqns)))),
        _Function("tanh", ("tanh",), act("tanh")),
        _Function("sigmoid", ("logistic",), act("sigmoid")),
    ]
    return sorted(functions, key=lambda f: -len(f.labels))


def _read_equations(jaxpr: Any, leaves: list[tuple[str, nnx.Module]], reader: SequentialReader, name: str) -> None:
    """Walk the traced equations in order, each reading the value the one before made."""
    eqns, value, at = list(jaxpr.eqns), jaxpr.invars[0], 0
    while at < len(eqns):
        eqn = eqns[at]
        where = f"operation {at} ({_label(eqn)})"
        if value not in eqn.invars:
            raise PortError(name, where, "it does not read the value before it: not a chain of layers")
        if any(v is not value and not hasattr(v, "val") for v in eqn.invars if _is_tensor(v, value)):
            raise PortError(
                name, where, "it reads earlier results besides the last one (a residual connection or a branch)"
            )
        label = _label(eqn)
        if label.startswith(f"jit:{_CALL}"):
            path, leaf = leaves[int(label.removeprefix(f"jit:{_CALL}"))]
            reader.add(
                _leaf_layer(leaf, path, name),
                f"{path} ({type(leaf).__name__})",
                None if isinstance(leaf, nnx.Dropout) else path,
            )
            value, at = eqn.outvars[0], at + 1
            continue
        consumed = _read_operation(eqns, at, value, reader, name)
        value, at = eqns[at + consumed - 1].outvars[0], at + consumed
    if value is not jaxpr.outvars[0]:
        raise PortError(name, "__call__", "its output is not the last layer's")


def _is_tensor(var: Any, value: Any) -> bool:
    shape = getattr(getattr(var, "aval", None), "shape", ())
    return len(shape) == len(value.aval.shape) and shape[:1] == value.aval.shape[:1]


def _read_operation(eqns: list[Any], at: int, value: Any, reader: SequentialReader, name: str) -> int:
    """Read the function that starts at equation ``at``; how many equations it takes."""
    eqn, shape = eqns[at], tuple(value.aval.shape)
    label, where = _label(eqn), f"operation {at} ({_label(eqn)})"
    if label == "copy":
        return 1
    if label == "reshape" and len(shape) > 2 and eqn.params["new_sizes"] == (shape[0], int(np.prod(shape[1:]))):
        reader.add(Flatten(), where)
        return 1
    if label in ("reduce_window_max", "reduce_window_sum"):
        reader.add(_pool(eqns, at, label, where, name), where)
        return 1 if label == "reduce_window_max" else 2
    following = tuple(_label(e) for e in eqns[at:])
    for function in _functions(shape):
        if following[: len(function.labels)] == function.labels:
            matched = eqns[at : at + len(function.labels)]
            layer = function.layer(matched)
            if layer is None:
                reader.end_with(function.label, where)
            elif at + len(function.labels) == len(eqns) and function.label == "sigmoid":
                reader.end_with("sigmoid", where)
            else:
                reader.add(layer, where)
            return len(function.labels)
    raise PortError(name, where, "an operation the specs do not know (between layers: activations, a flatten, pooling)")


def _pool(eqns: list[Any], at: int, label: str, where: str, name: str) -> Pool2D:
    params = eqns[at].params
    window, strides, pads = params["window_dimensions"], params["window_strides"], params["padding"]
    if window[0] != 1 or window[-1] != 1 or strides[0] != 1 or strides[-1] != 1 or len(window) != 4:
        raise PortError(name, where, "pooling over the batch or the channels: the specs pool height and width")
    padding: Padding = "valid" if all(p == (0, 0) for p in pads) else (tuple(pads[1]), tuple(pads[2]))  # type: ignore[assignment]
    if label == "reduce_window_max":
        return Pool2D("max", tuple(window[1:3]), tuple(strides[1:3]), padding)  # type: ignore[arg-type]
    divisor = eqns[at + 1] if at + 1 < len(eqns) else None
    if divisor is None or divisor.primitive.name != "div" or not hasattr(divisor.invars[1], "val"):
        raise PortError(name, where, "a windowed sum that is not an average pool")
    count = None if padding == "valid" else True  # Flax's avg_pool counts the padding (count_include_pad)
    return Pool2D("avg", tuple(window[1:3]), tuple(strides[1:3]), padding, count)  # type: ignore[arg-type]


def _leaf_layer(leaf: nnx.Module, path: str, name: str) -> Layer:
    where = f"{path} ({type(leaf).__name__})"

    match leaf:
        case nnx.Linear():
            return Dense(leaf.out_features, use_bias=leaf.use_bias)
        case nnx.Conv():
            require_layer(
                name, where, not isinstance(leaf.kernel_size, int) and len(leaf.kernel_size) == 2, "a 2-D kernel"
            )
            require_layer(
                name, where, leaf.feature_group_count == 1, f"feature_group_count=1 (it has {leaf.feature_group_count})"
            )
            require_layer(
                name, where, leaf.kernel_dilation in (1, (1, 1)) and leaf.input_dilation in (1, (1, 1)), "no dilation"
            )
            padding = _conv_padding(leaf.padding, where, name)
            return Conv2D(leaf.out_features, _pair(leaf.kernel_size), _pair(leaf.strides), padding, leaf.use_bias)
        case nnx.BatchNorm():
            require_layer(
                name, where, leaf.axis == -1 and leaf.use_bias and leaf.use_scale, "axis=-1, use_bias and use_scale"
            )
            return BatchNorm(float(leaf.momentum), float(leaf.epsilon), "biased")
        case nnx.Dropout():  # broadcast_dims drop whole maps: not the spec's Dropout
            require_layer(name, where, not leaf.broadcast_dims, "no broadcast_dims")
            return Dropout(float(leaf.rate))
    raise PortError(name, where, "not a layer the specs know")


def _pair(value: int | Sequence[int] | None) -> tuple[int, int]:
    """Flax's int, pair or ``None`` (1) for a window or stride."""
    if value is None or isinstance(value, int):
        return (value or 1, value or 1)
    first, second = value
    return (int(first), int(second))


def _conv_padding(padding: Any, where: str, name: str) -> Padding:
    if isinstance(padding, str) and padding.upper() in ("SAME", "VALID"):
        return padding.lower()
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if isinstance(padding, Sequence) and len(padding) == 2 and all(len(p) == 2 for p in padding):
        return (tuple(padding[0]), tuple(padding[1]))  # type: ignore[return-value]
    raise PortError(name, where, f"padding {padding!r}: the specs take 'SAME', 'VALID' or explicit pads")


# --- Transformers ---------------------------------------------------------------------------------

_TRANSFORMER_LAYERS = (nnx.Embed, nnx.MultiHeadAttention, nnx.LayerNorm, nnx.Linear)
# canonical sub-layer of an encoder layer -> the nnx.MultiHeadAttention child that holds it
_PROJECTIONS = {"query": "query", "key": "key", "value": "value", "output": "out"}


def _transformer(model: nnx.Module, input_shape: tuple[int, ...], name: str) -> tuple[TransformerSpec, dict[str, str]]:
    """A token ``nnx.Embed``, positions (a second ``nnx.Embed``, called on 0 … T−1 or read whole, or
    fixed sinusoidal ones), encoder blocks of ``nnx.MultiHeadAttention``, two ``nnx.LayerNorm`` and
    two ``nnx.Linear`` each (post-norm; pre-norm with one more LayerNorm at the end), and a Linear
    head. Each layer's role is read from the order ``__call__`` calls them in; what it does between
    them, from what it computes (:func:`spec.port.transformer_form`)."""
    if len(input_shape) != 1:
        raise PortError(name, "input_shape", f"{input_shape}: (T,), token ids, for a Transformer")
    seq_len = input_shape[0]
    calls = _calls(model, _TRANSFORMER_LAYERS, jnp.zeros((1, seq_len), jnp.int32), name)
    refuse_shared_calls(name, [path for path, _, _ in calls])
    called = {path: layer for path, layer, _ in calls}
    of = lambda kind: [path for path, layer, _ in calls if isinstance(layer, kind)]  # noqa: E731
    indexed_by_position = [
        path for path, layer, value in calls
        if isinstance(layer, nnx.Embed) and indexes_positions(value, seq_len)
    ]  # fmt: skip
    tokens = [path for path in of(nnx.Embed) if path not in indexed_by_position]
    attentions, norms, linears = of(nnx.MultiHeadAttention), of(nnx.LayerNorm), of(nnx.Linear)
    if len(tokens) != 1:
        raise PortError(name, ", ".join(tokens) or "__call__", "one nnx.Embed of the tokens")
    roles = encoder_roles(
        name, attentions, norms, linears, str, ("nnx.MultiHeadAttention", "nnx.LayerNorm", "nnx.Linear")
    )
    token = called[tokens[0]]
    assert isinstance(token, nnx.Embed)
    d_model = token.features
    position = _position_embed(model, called, indexed_by_position, seq_len, d_model, name)
    fields = _encoder_fields(called, attentions, norms, linears[:-1], d_model, name)
    head = called[roles["dense_0"]]
    assert isinstance(head, nnx.Linear)
    base = TransformerSpec(
        name, token.num_embeddings, seq_len, d_model, output_size=head.out_features, output_activation="linear",
        positional="sinusoidal" if position is None else "learned", **fields,
    )  # fmt: skip
    sources = {"embedding": tokens[0]} | ({} if position is None else {"position": position})
    for role, path in roles.items():  # an attention's four projections are its children
        if role.endswith("/attention"):
            sources |= {f"{role}/{part}": f"{path}.{child}" for part, child in _PROJECTIONS.items()}
        else:
            sources[role] = path
    _require_all_read(model, sources, name)
    params, run = _params(model, base, sources), source_outputs(model)
    # the FFN's activation is a function between its Linears: read, like the forward, from what it computes
    return transformer_form(base, params, 0, run, ("relu", "gelu(exact)", "gelu(tanh)")), sources


def _position_embed(
    model: nnx.Module, called: dict[str, nnx.Module], indexed: list[str], seq_len: int, d_model: int, name: str
) -> str | None:
    """The path of the ``nnx.Embed`` of learned positions — called on 0 … T−1, or an Embed the
    model reads whole (``.embedding[...]``) — or ``None`` for fixed positions."""
    unread = [
        ".".join(map(str, path)) for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Embed) and path and ".".join(map(str, path)) not in called
    ]  # fmt: skip
    found = indexed + unread
    if len(found) > 1:
        raise PortError(name, ", ".join(found), "one nnx.Embed of positions at most")
    if not found:
        return None
    table = _at(model, found[0])
    if table.num_embeddings != seq_len or table.features != d_model:
        why = f"a table of exactly {seq_len} positions of {d_model} (it has {table.num_embeddings} of {table.features})"
        raise PortError(name, found[0], why)
    return found[0]


def _encoder_fields(
    called: dict[str, nnx.Module],
    attentions: list[str],
    norms: list[str],
    ffn: list[str],
    d_model: int,
    name: str,
) -> dict[str, Any]:
    """The spec's fields of the encoder blocks, which must all be alike and of a form it knows."""
    heads_forms, ffn_forms = set(), set()
    for path in attentions:
        attention = called[path]
        assert isinstance(attention, nnx.MultiHeadAttention)
        require_layer(
            name,
            path,
            attention.in_features == d_model and attention.out_features == d_model and attention.use_bias
            and not attention.normalize_qk,
            "biases, in and out features d_model, no q/k normalisation",
        )  # fmt: skip
        heads_forms.add((attention.num_heads, attention.head_dim))
    for path in norms:
        norm = called[path]
        assert isinstance(norm, nnx.LayerNorm)
        require_layer(
            name, path, norm.use_bias and norm.use_scale and norm.reduction_axes == -1, "scale, shift, axis -1"
        )
    for inner, outer in zip(ffn[::2], ffn[1::2], strict=True):
        first, second = called[inner], called[outer]
        assert isinstance(first, nnx.Linear) and isinstance(second, nnx.Linear)
        require_layer(name, outer, second.out_features == d_model, f"{d_model} output features")
        require_layer(name, inner, first.use_bias and second.use_bias, "biases")
        ffn_forms.add(first.out_features)
    epsilons = {called[path].epsilon for path in norms}  # type: ignore[attr-defined]
    if len(heads_forms) != 1 or len(ffn_forms) != 1 or len(epsilons) != 1:
        raise PortError(name, "encoder", "blocks of different forms (heads, FFN, LayerNorm ε): the spec's are alike")
    (heads, head_dim), ff_size = heads_forms.pop(), ffn_forms.pop()
    return {
        "num_heads": heads, "ff_size": ff_size, "num_layers": len(attentions),
        "norm": "pre" if len(norms) % 2 else "post", "layer_norm_epsilon": float(epsilons.pop()),
        "key_dim": None if heads * head_dim == d_model else head_dim,
    }  # fmt: skip


def _require_all_read(model: nnx.Module, sources: dict[str, str], name: str) -> None:
    """Every parameter of the module lies in a layer the spec reads: none is dropped unseen."""
    read = tuple(sources.values())
    unread = [
        ".".join(map(str, path)) for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Param) and not any(".".join(map(str, path)).startswith(f"{r}.") for r in read)
    ]  # fmt: skip
    if unread:
        raise PortError(name, ", ".join(unread), "parameters the spec's Transformer has no place for")


# --- recurrent models -----------------------------------------------------------------------------

# Flax's cells the spec's recurrent layers are: the cell's class -> the spec's cell
_RECURRENT_LAYERS = (nnx.RNN, nnx.Linear, nnx.Bidirectional)
_CELLS: dict[type, str] = {nnx.SimpleCell: "simple_rnn", nnx.OptimizedLSTMCell: "lstm", nnx.GRUCell: "gru"}
_DIRECTIONS = ("forward", "backward")  # nnx.Bidirectional's forward_rnn and backward_rnn, the spec's order
_FLAX_CONCATENATE = inspect.signature(nnx.Bidirectional.__init__).parameters["merge_fn"].default


def _recurrent(model: nnx.Module, input_shape: tuple[int, ...], name: str) -> tuple[RNNSpec, dict[str, str]]:
    """Stacked ``nnx.RNN`` layers, or ``nnx.Bidirectional`` ones (their outputs concatenated, as Flax
    does by default), of one cell (``nnx.SimpleCell`` with tanh, ``nnx.OptimizedLSTMCell``,
    ``nnx.GRUCell`` — its missing recurrent bias is the spec's reset-after GRU's at zero) and a
    Linear head, found in the order ``__call__`` calls them. Whether the head reads the last states
    or every step, and the output activation, are read from what the module computes."""
    if len(input_shape) != 2:
        raise PortError(name, "input_shape", f"{input_shape}: (T, F), a batch-first sequence, for a recurrent model")
    paths = [(path, layer) for path, layer, _ in _calls(model, _RECURRENT_LAYERS, jnp.zeros((1, *input_shape)), name)]
    if not paths:
        raise PortError(name, "__call__", "it calls no nnx.RNN or Linear layer")
    *stack, (head_path, head) = paths
    kinds = {type(layer) for _, layer in stack}
    if not isinstance(head, nnx.Linear) or kinds not in ({nnx.RNN}, {nnx.Bidirectional}):
        found = ", ".join(f"{path} ({type(layer).__name__})" for path, layer in paths)
        why = "a recurrent model the importer reads calls nnx.RNN (or nnx.Bidirectional) layers, then one Linear head"
        raise PortError(name, found, why)
    bidirectional = kinds == {nnx.Bidirectional}
    # the cells' own widths and activations: attributes of each cell class, not of RNNCellBase
    cells: list[tuple[str, Any]] = [(f"{path}.cell", layer.cell) for path, layer in stack if isinstance(layer, nnx.RNN)]
    for path, layer in stack if bidirectional else []:
        assert isinstance(layer, nnx.Bidirectional)
        require_layer(name, path, layer.forward_rnn is not layer.backward_rnn, "two directions of their own")
        require_layer(name, path, layer.merge_fn is _FLAX_CONCATENATE, "merge_fn left at its concatenation")
        cells += [
            (f"{path}.{direction}_rnn.cell", getattr(layer, f"{direction}_rnn").cell) for direction in _DIRECTIONS
        ]
    cell_kinds = {type(cell) for _, cell in cells}
    if len(cell_kinds) != 1 or cell_kinds.pop() not in _CELLS:
        found = ", ".join(f"{path} ({type(cell).__name__})" for path, cell in cells)
        why = f"one kind of cell of {', '.join(c.__name__ for c in _CELLS)} (nnx.LSTMCell's gates are separate Linears)"
        raise PortError(name, found, why)
    first = cells[0][1]
    for path, cell in cells:
        activation = getattr(cell, "activation_fn", jnp.tanh)
        require_layer(name, path, activation is jnp.tanh or activation is nnx.tanh, "activation_fn=tanh")
        require_layer(name, path, cell.hidden_features == first.hidden_features, "one width for every layer")
    base = RNNSpec(
        name, _CELLS[type(first)], input_shape[1], first.hidden_features, input_shape[0], head.out_features,
        "linear", num_layers=len(stack), bidirectional=bidirectional, gru_reset="after",
    )  # fmt: skip
    layers = [layer for index in range(base.num_layers) for layer in rnn_layer_names(base, index)]
    sources = dict(zip(layers, (path for path, _ in cells))) | {"dense_0": head_path}
    params, run = _params(model, base, sources), source_outputs(model)
    x = np.random.default_rng(0).standard_normal((4, *input_shape)).astype(np.float32)
    forms = []
    for head_form, output in product(("last", "sequence"), ("linear", "sigmoid", "softmax")):
        with suppress(SpecError):  # a form the spec does not have (a softmax over each step's outputs)
            forms.append(replace(base, head=head_form, output_activation=output))
    known = (
        "the spec's recurrent models (the head on the last states — a backward direction's is at step 0 — or on "
        "every step; a linear, sigmoid or softmax output)"
    )
    return closest_form(forms, params, x, run(x), known), sources
