"""Canonical ⇄ Flax NNX names and layouts.

``nnx.Linear`` kernels are already (in, out), the canonical layout, so values pass through unchanged;
this module maps names to ``nnx.Param`` variables and to paths in an ``nnx.State``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from spec.params import check_params, dense_name


def canonical_paths(model: nnx.Module) -> dict[str, tuple[str | int, ...]]:
    """Canonical name -> path of the variable in ``nnx.state(model)``, in the spec's order."""
    paths = {}
    for i in range(len(model.dense)):
        paths[f"{dense_name(i)}/kernel"] = ("dense", i, "kernel")
        if model.spec.use_bias:
            paths[f"{dense_name(i)}/bias"] = ("dense", i, "bias")
    return paths


def _at(tree: object, path: tuple[str | int, ...]) -> nnx.Variable:
    """The variable at ``path`` in a module (attributes) or an ``nnx.State`` (keys)."""
    for key in path:
        tree = tree[key] if isinstance(key, int) or isinstance(tree, Mapping) else getattr(tree, key)
    return tree


def load(model: nnx.Module, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params)
    for name, path in canonical_paths(model).items():
        _at(model, path).set_value(jnp.asarray(checked[name]))


def export(model: nnx.Module) -> dict[str, np.ndarray]:
    return from_state(model, nnx.state(model, nnx.Param))


def to_state(model: nnx.Module, arrays: Mapping[str, np.ndarray]) -> nnx.State:
    """A parameter-shaped ``nnx.State`` holding canonical ``arrays`` (e.g. gradients to apply)."""
    checked = check_params(model.spec, arrays, source="gradients")
    state = nnx.clone(nnx.state(model, nnx.Param))
    for name, path in canonical_paths(model).items():
        _at(state, path).set_value(jnp.asarray(checked[name]))
    return state


def from_state(model: nnx.Module, state: nnx.State) -> dict[str, np.ndarray]:
    """Canonical arrays from a parameter-shaped ``nnx.State`` (parameters or their gradients)."""
    return {name: np.asarray(_at(state, path).get_value()) for name, path in canonical_paths(model).items()}
