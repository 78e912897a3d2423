"""Canonical ⇄ Keras names and layouts.

Keras ``Dense`` kernels are already (in, out), the canonical layout, so values pass through unchanged;
this module maps names to variables.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from spec.params import check_params, dense_name


def canonical_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's variables under canonical names, in the spec's order."""
    named = {}
    for i, layer in enumerate(model.dense):
        named[f"{dense_name(i)}/kernel"] = layer.kernel
        if model.spec.use_bias:
            named[f"{dense_name(i)}/bias"] = layer.bias
    return named


def load(model: keras.Model, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params)
    for name, variable in canonical_variables(model).items():
        variable.assign(checked[name])


def export(model: keras.Model) -> dict[str, np.ndarray]:
    return {name: keras.ops.convert_to_numpy(v) for name, v in canonical_variables(model).items()}
