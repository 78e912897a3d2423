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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impls.jax import weights
from spec.errors import PortError
from spec.layers import Act, Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, Layer, Padding, Pool2D
from spec.params import param_specs
from spec.port import Imported, SequentialReader

LEAVES = (nnx.Linear, nnx.Conv, nnx.BatchNorm, nnx.Dropout)  # each traced as a call of its own
_CALL = "triptych_layer_"  # the name of a leaf's traced call: _CALL + its index


def import_model(model: nnx.Module, input_shape: tuple[int, ...], name: str | None = None) -> Imported:
    """The spec ``model`` computes on inputs of ``input_shape`` (one example, Flax's layout, which is
    the canonical one: (H, W, C) images, (F,) vectors) and its tensors in canonical form."""
    name = name or type(model).__name__
    spec, sources = _read(model, tuple(input_shape), name)
    params = {}
    for tensor, info in param_specs(spec).items():
        layer, variable = tensor.rsplit("/", 1)
        source = _at(model, sources[layer])
        params[tensor] = weights.read_variable(getattr(source, weights.VARIABLES[variable]), info)
    return Imported("jax", spec, params, sources)


def load_checkpoint(model: nnx.Module, path: str | Path) -> None:
    """Load the parameters and batch statistics saved as msgpack (:func:`impls.jax.weights.save_state_file`)."""
    weights.load_state_file(model, path)


def canonical_inputs(x: np.ndarray) -> np.ndarray:
    """Flax's layout is the canonical one."""
    return np.asarray(x, dtype=np.float32)


def source_outputs(model: nnx.Module) -> Callable[[np.ndarray], np.ndarray]:
    """A runner of the user's module in evaluation mode (``model.eval()``), giving what it returns."""

    def run(x: np.ndarray) -> np.ndarray:
        model.eval()
        return np.asarray(model(jnp.asarray(x, jnp.float32)))

    return run


def source_layer_outputs(model: nnx.Module, imported: Imported) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A runner of the user's module in evaluation mode giving, by canonical name, what each of its
    layers that holds a canonical one returns."""
    by_path = {path: layer for layer, path in imported.sources.items()}

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        captured: dict[str, np.ndarray] = {}

        def keep(path: str, module: nnx.Module) -> Callable[..., Any]:
            def call(value: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
                out = module(value, *args, **kwargs)
                if path in by_path:
                    captured[by_path[path]] = np.asarray(out)
                return out

            return call

        model.eval()
        with _replaced(model, keep):
            model(jnp.asarray(x, jnp.float32))
        return captured

    return run


# --- reading ------------------------------------------------------------------------------------


def _leaves(model: nnx.Module) -> list[tuple[str, nnx.Module]]:
    """The layers of the module the reader traces as calls of their own, by path ("conv1", "layers.0")."""
    found: list[tuple[str, nnx.Module]] = []
    for path, node in nnx.iter_graph(model):
        if isinstance(node, LEAVES) and path:
            found.append((".".join(map(str, path)), node))
    return found


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


@contextmanager
def _replaced(model: nnx.Module, wrap: Callable[[str, nnx.Module], Callable[..., Any]]) -> Iterator[None]:
    """Each traced layer replaced by ``wrap(path, layer)`` while open, then put back."""
    leaves = _leaves(model)
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

    model.eval()
    try:
        with _replaced(model, named):
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

    def require(condition: bool, what: str) -> None:
        if not condition:
            raise PortError(name, where, f"the specs express this layer only with {what}")

    match leaf:
        case nnx.Linear():
            return Dense(leaf.out_features, use_bias=leaf.use_bias)
        case nnx.Conv():
            require(not isinstance(leaf.kernel_size, int) and len(leaf.kernel_size) == 2, "a 2-D kernel")
            require(leaf.feature_group_count == 1, f"feature_group_count=1 (it has {leaf.feature_group_count})")
            require(leaf.kernel_dilation in (1, (1, 1)) and leaf.input_dilation in (1, (1, 1)), "no dilation")
            padding = _conv_padding(leaf.padding, where, name)
            return Conv2D(leaf.out_features, _pair(leaf.kernel_size), _pair(leaf.strides), padding, leaf.use_bias)
        case nnx.BatchNorm():
            require(leaf.axis == -1 and leaf.use_bias and leaf.use_scale, "axis=-1, use_bias and use_scale")
            return BatchNorm(float(leaf.momentum), float(leaf.epsilon), "biased")
        case nnx.Dropout():  # broadcast_dims drop whole maps: not the spec's Dropout
            require(not leaf.broadcast_dims, "no broadcast_dims")
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
