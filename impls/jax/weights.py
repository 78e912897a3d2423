"""Canonical ⇄ Flax NNX names and layouts (conventions in :mod:`spec.params`).

Flax already uses the canonical layouts — NHWC images, ``nnx.Linear`` kernels (in, out), ``nnx.Conv``
kernels (kh, kw, in, out), NHWC flattening and reshaping — so values pass through unchanged, but for
``nnx.ConvTranspose``'s (kh, kw, out, in) kernel (:func:`swap_layout`); this module maps
canonical names to variables and to paths in an ``nnx.State``. BatchNorm's ``gamma``, ``beta``,
``moving_mean`` and ``moving_variance`` are Flax's ``scale``, ``bias``, ``mean`` and ``var``. A
recurrent layer's kernel and recurrent kernel are its cell's ``dense_i`` and ``dense_h`` kernels
(same gate order); its bias is ``dense_i``'s (SimpleCell), ``dense_h``'s (OptimizedLSTMCell) or the
cell's own (:class:`impls.jax.models.GRUCell`). ``nnx.MultiHeadAttention``'s ``query``, ``key``,
``value`` and ``out`` LinearGenerals hold the canonical attention layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization, traverse_util

from impls.jax.models import SpecModel
from spec.errors import WeightFileError
from spec.layer_paths import NativePath, resolve
from spec.models import is_frozen
from spec.params import ParamInfo, check_params, layer_names, optimizer_groups, param_specs, variable_dtype

VARIABLES = {  # canonical variable -> the Flax attribute holding it
    "kernel": "kernel",
    "bias": "bias",
    "gamma": "scale",  # BatchNorm's and LayerNorm's
    "beta": "bias",
    "moving_mean": "mean",
    "moving_variance": "var",
    "embeddings": "embedding",  # nnx.Embed's table
}


def canonical_paths(model: SpecModel, *, trainable_only: bool = False) -> dict[str, NativePath]:
    """Canonical name -> path of the variable in ``nnx.state(model)``, in the spec's order (BatchNorm
    statistics too, unless ``trainable_only``)."""
    paths: dict[str, NativePath] = {}
    for name, info in param_specs(model.spec).items():
        if info.trainable or not trainable_only:
            layer, variable = name.rsplit("/", 1)
            if info.is_recurrent:
                paths[name] = (*model.layer_paths[layer], *recurrent_variable(info.gates, variable))
            else:
                paths[name] = (*model.layer_paths[layer], VARIABLES[variable])
    return paths


# Where each cell keeps its one bias, by the cell's gates: SimpleCell in dense_i, OptimizedLSTMCell in
# dense_h, impls.jax.models.GRUCell as its own parameter.
_CELL_BIAS = {("h",): ("dense_i", "bias"), ("i", "f", "g", "o"): ("dense_h", "bias"), ("r", "z", "n"): ("bias",)}


def recurrent_variable(gates: tuple[str, ...], variable: str) -> tuple[str, ...]:
    """Where a cell keeps a canonical recurrent tensor (see the module docstring)."""
    if variable == "kernel":
        return ("dense_i", "kernel")
    if variable == "recurrent_kernel":
        return ("dense_h", "kernel")
    return _CELL_BIAS[gates]


def freeze(model: SpecModel) -> None:
    """Record the spec's frozen layers: :func:`trainable` leaves their parameters out of gradients and
    updates, and ``model.train()`` keeps their BatchNorms on running statistics when
    ``spec.frozen_batchnorm`` is "inference"."""
    spec = model.spec
    frozen = [layer for layer in layer_names(spec) if is_frozen(spec, layer)]
    model.frozen_paths = frozenset(
        path for name, path in canonical_paths(model).items() if is_frozen(spec, name.rsplit("/", 1)[0])
    )
    if spec.frozen_batchnorm == "inference":
        paths = (model.layer_paths[layer] for layer in frozen)
        model.frozen_batchnorm_paths = tuple(p for p in paths if isinstance(resolve(model, p), nnx.BatchNorm))


def trainable(model: SpecModel, part: str | None = None) -> nnx.filterlib.Filter:
    """The NNX filter of what training updates: every ``nnx.Param`` outside the frozen layers — only
    those of one network of a GAN, ``part`` (``spec.params.optimizer_groups``), if given."""
    frozen: frozenset[NativePath] = getattr(model, "frozen_paths", frozenset())
    params = nnx.All(nnx.Param, lambda path, _: tuple(path) not in frozen) if frozen else nnx.Param
    return params if part is None else nnx.All(params, nnx.PathContains(part))


def swap_layout(info: ParamInfo, value: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
    """A tensor in Flax's layout from the canonical one, or back (its own inverse): only a
    transposed conv's kernel differs, (kh, kw, out, in) with ``transpose_kernel=True``."""
    return value.swapaxes(2, 3) if info.layout == "conv_transpose" else value


def read_variable(variable: nnx.Variable, info: ParamInfo) -> np.ndarray:
    """A variable's value (a parameter, or a gradient in a state) as a canonical numpy array."""
    return np.ascontiguousarray(swap_layout(info, np.asarray(variable.get_value())))


def _write(variable: nnx.Variable, info: ParamInfo, value: np.ndarray) -> None:
    """Set a variable from a canonical array."""
    variable.set_value(jnp.asarray(swap_layout(info, value)))


def _part_names(model: SpecModel, part: str) -> list[str]:
    """The canonical names of the tensors of ``part``, one network of a GAN (``spec.params.optimizer_groups``)."""
    groups = optimizer_groups(model.spec)
    assert groups is not None  # a part names one of the model's optimizer groups (spec.params.group_of)
    return groups[part]


def _variable(root: SpecModel | nnx.State, path: NativePath) -> nnx.Variable:
    """The variable at ``path`` (from :func:`canonical_paths`) in a model or a state of it."""
    variable = resolve(root, path)
    assert isinstance(variable, nnx.Variable)  # a canonical path ends at a variable, in the model and its states
    return variable


def load(model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params, dtype=variable_dtype(model.precision))
    infos = param_specs(model.spec)
    for name, path in canonical_paths(model).items():
        _write(_variable(model, path), infos[name], checked[name])


def export(model: SpecModel) -> dict[str, np.ndarray]:
    infos = param_specs(model.spec)
    return {name: read_variable(_variable(model, path), infos[name]) for name, path in canonical_paths(model).items()}


def to_state(model: SpecModel, arrays: Mapping[str, np.ndarray], part: str | None = None) -> nnx.State:
    """A parameter-shaped ``nnx.State`` holding canonical ``arrays`` (e.g. gradients to apply) — of
    every trained tensor, or of one network of a GAN, ``part``."""
    names = _part_names(model, part) if part else None
    checked = check_params(
        model.spec, arrays, source="gradients", trainable_only=True, names=names, dtype=variable_dtype(model.precision)
    )
    state = nnx.clone(nnx.state(model, trainable(model, part)))
    paths, infos = canonical_paths(model), param_specs(model.spec)
    for name in checked:
        _write(_variable(state, paths[name]), infos[name], checked[name])
    return state


def from_state(model: SpecModel, state: nnx.State, part: str | None = None) -> dict[str, np.ndarray]:
    """Canonical arrays from a parameter-shaped ``nnx.State`` (the parameters' gradients, say) — of
    every trained tensor, or of one network of a GAN, ``part``."""
    paths = canonical_paths(model, trainable_only=True)
    names = _part_names(model, part) if part else list(paths)
    infos = param_specs(model.spec)
    return {name: read_variable(_variable(state, paths[name]), infos[name]) for name in names}


# What a native file holds: the parameters and BatchNorm statistics, not the random streams' keys
# (dropout's), which are the framework's, drawn from a seed at build.
NATIVE_STATE = nnx.Any(nnx.Param, nnx.BatchStat)


def save_state_file(model: nnx.Module, path: str | Path) -> Path:
    """The module's parameters and batch statistics (:data:`NATIVE_STATE`) as a pure dict of
    arrays serialised by ``flax.serialization.msgpack_serialize``."""
    path = Path(path)
    pure = nnx.to_pure_dict(nnx.state(model, NATIVE_STATE))
    path.write_bytes(serialization.msgpack_serialize(jax.tree.map(np.asarray, pure)))
    return path


def load_state_file(model: nnx.Module, path: str | Path) -> None:
    """Load a file of :func:`save_state_file`'s format into ``model``: every variable required, with
    its shape; a missing, unexpected or mis-shaped one raises naming the file and its path."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"checkpoint {str(path)!r} does not exist")
    try:
        restored = serialization.msgpack_restore(path.read_bytes())
    except Exception as exc:  # msgpack's ExtraData, ValueError, … for a truncated or foreign file
        why = type(exc).__name__
        raise WeightFileError(f"checkpoint {str(path)!r} is not a readable msgpack state ({why})") from exc
    state = nnx.state(model, NATIVE_STATE)
    expected = traverse_util.flatten_dict(nnx.to_pure_dict(state))
    found = traverse_util.flatten_dict(restored) if isinstance(restored, dict) else {}
    missing = sorted("/".join(map(str, key)) for key in set(expected) - set(found))
    unexpected = sorted("/".join(map(str, key)) for key in set(found) - set(expected))
    if missing or unexpected:
        why = f"missing {missing}, unexpected {unexpected}"
        raise WeightFileError(f"checkpoint {str(path)!r} does not fit {type(model).__name__}: {why}")
    for key, value in expected.items():
        if np.shape(found[key]) != np.shape(value):
            name = "/".join(map(str, key))
            why = f"{name!r} has shape {np.shape(found[key])}, the model's {np.shape(value)}"
            raise WeightFileError(f"checkpoint {str(path)!r}: {why}")
    cast = {key: np.asarray(found[key], dtype=np.asarray(value).dtype) for key, value in expected.items()}
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(cast))
    nnx.update(model, state)
