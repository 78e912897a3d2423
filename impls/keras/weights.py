"""Canonical ⇄ Keras names and layouts (conventions in :mod:`spec.params`).

Keras already uses the canonical layouts — NHWC images, ``Dense`` kernels (in, out), ``Conv2D``
kernels (kh, kw, in, out), NHWC flattening and reshaping — except ``Conv2DTranspose``'s
(kh, kw, out, in) kernel, and BatchNormalization's variable names, so values pass
through unchanged; this module maps canonical names to Keras variables. Recurrent cells hold
``kernel``, ``recurrent_kernel`` and ``bias`` in the canonical layout too, (2, G·H) for the
reset-after GRU's bias included, except that Keras orders the GRU's gates z, r, h. A
``MultiHeadAttention`` holds q, k, v as (d_model, heads, head_dim) and the output as
(heads, head_dim, d_model) kernels, the canonical layouts.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from pathlib import Path

import keras
import numpy as np

from impls.keras.models import SpecModel
from spec.errors import WeightFileError
from spec.layer_paths import resolve
from spec.models import is_frozen
from spec.params import ParamInfo, check_params, layer_names, param_specs, variable_dtype

_GRU_GATES = ("r", "z", "n")  # canonical; Keras holds z, r, h: r and z swap (and back: its own inverse)


def swap_layout(info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """A tensor in Keras's layout from the canonical one, or back — each difference is its own
    inverse: a GRU tensor's gate blocks (z and r swapped), and a transposed conv's kernel, which
    Keras keeps as (kh, kw, out, in), the kernel of the convolution it is the gradient of."""
    if info.layout == "conv_transpose":
        return np.asarray(value).swapaxes(2, 3)
    if info.gates != _GRU_GATES:
        return value
    r, z, n = np.split(np.asarray(value), 3, axis=-1)
    return np.concatenate([z, r, n], axis=-1)


def native_layer(model: SpecModel, layer: str) -> keras.layers.Layer:
    """The Keras layer (a recurrent layer's cell) of canonical layer ``layer``, where the model
    recorded it (``model.layer_paths``)."""
    return resolve(model, model.layer_paths[layer])


def canonical_variables(
    model: SpecModel, *, trainable_only: bool = False, names: Collection[str] | None = None
) -> dict[str, keras.Variable]:
    """The model's variables under canonical names, in the spec's order (BatchNorm's moving
    statistics too, unless ``trainable_only``; only those of ``names``, if given)."""
    named = {}
    for name, info in param_specs(model.spec).items():
        if (info.trainable or not trainable_only) and (names is None or name in names):
            layer, variable = name.rsplit("/", 1)
            named[name] = getattr(native_layer(model, layer), variable)
    return named


def freeze(model: SpecModel) -> None:
    """Apply the spec's frozen layers the Keras way: ``layer.trainable = False``, which also puts a
    BatchNormalization layer in inference mode (the spec's "inference"). For "training", a frozen
    BatchNormalization stays trainable — on batch statistics, updating its moving ones — with only
    ``gamma`` and ``beta`` marked untrainable."""
    spec = model.spec
    for layer in layer_names(spec):
        if not is_frozen(spec, layer):
            continue
        native = native_layer(model, layer)
        if isinstance(native, keras.layers.BatchNormalization) and spec.frozen_batchnorm == "training":
            native.gamma.trainable = native.beta.trainable = False
        else:
            native.trainable = False


def load(model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params, dtype=variable_dtype(model.precision))
    infos = param_specs(model.spec)
    for name, variable in canonical_variables(model).items():
        variable.assign(swap_layout(infos[name], checked[name]))


def export(model: SpecModel) -> dict[str, np.ndarray]:
    return to_canonical(model, {name: keras.ops.convert_to_numpy(v) for name, v in canonical_variables(model).items()})


def to_canonical(model: SpecModel, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays of the model's variables (values or gradients), by canonical name, in the canonical layout."""
    infos = param_specs(model.spec)
    return {name: swap_layout(infos[name], np.asarray(value)) for name, value in arrays.items()}


def to_native(model: SpecModel, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical arrays (gradients, say), by canonical name, in the layout of the model's variables."""
    infos = param_specs(model.spec)
    return {name: swap_layout(infos[name], value) for name, value in arrays.items()}


def save_weights_file(model: keras.Model, path: str | Path) -> Path:
    """The model as a ``.keras`` file (``model.save``: its config — for triptych's models the spec,
    :mod:`spec.config` — and weights; ``keras.saving.load_model`` rebuilds it), or its weights alone
    as a ``.weights.h5`` file (``save_weights``)."""
    path = Path(path)
    if path.name.endswith(".keras"):
        model.save(path)
    else:
        model.save_weights(path)
    return path


def load_weights_file(model: keras.Model, path: str | Path) -> None:
    """Load the weights of a ``.weights.h5`` file (``save_weights``) or a ``.keras`` file
    (``model.save``); a missing, corrupt or mismatched file raises naming it (and Keras's account of
    the layer that does not fit)."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"checkpoint {str(path)!r} does not exist")
    if not path.name.endswith((".weights.h5", ".keras")):
        raise WeightFileError(f"checkpoint {str(path)!r}: a Keras model's weights are a .weights.h5 or .keras file")
    try:
        with warnings.catch_warnings():
            # Keras warns, and leaves the layers as they were, where a saved group is missing
            warnings.simplefilter("error", UserWarning)
            model.load_weights(path)
    except Exception as exc:  # h5py's OSError for a corrupt file, Keras's ValueError for a mismatch
        why = f"{type(exc).__name__}: {exc}"
        raise WeightFileError(f"checkpoint {str(path)!r} does not fit {model.name}: {why}") from exc
