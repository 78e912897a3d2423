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

from collections.abc import Collection, Mapping

import keras
import numpy as np

from spec.models import is_frozen
from spec.params import ParamInfo, check_params, layer_names, param_specs, rnn_layer_position

_KERAS_GRU_GATES = [1, 0, 2]  # canonical r, z, n -> Keras z, r, h (and back: the swap is its own inverse)


def swap_layout(spec: object, info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """A tensor in Keras's layout from the canonical one, or back — each difference is its own
    inverse: a GRU tensor's gate blocks (z and r swapped), and a transposed conv's kernel, which
    Keras keeps as (kh, kw, out, in), the kernel of the convolution it is the gradient of."""
    if info.layout == "conv_transpose":
        return np.asarray(value).swapaxes(2, 3)
    if spec.kind != "rnn" or spec.cell != "gru" or not info.is_recurrent:
        return value
    blocks = np.split(np.asarray(value), 3, axis=-1)
    return np.concatenate([blocks[i] for i in _KERAS_GRU_GATES], axis=-1)


def _layer(model: keras.Model, layer: str) -> keras.layers.Layer:
    """The Keras layer of canonical layer ``layer`` (``dense_1``, ``conv_0``, ``stage_1/block_0/conv_a``,
    ``rnn_0/backward`` (its cell) …)."""
    kind = model.spec.kind
    if kind == "mlp":
        return model.dense[int(layer.rsplit("_", 1)[1])]
    if kind in ("vae", "gan"):  # encoder/dense_1 -> dense_1 of model.encoder
        part, inner = layer.split("/", 1)
        return _layer(getattr(model, part), inner)
    if kind == "rnn":
        if layer == "dense_0":
            return model.head
        if layer in ("attention", "attention_score"):
            return getattr(model, layer)
        index, direction = rnn_layer_position(layer)
        native = model.recurrent[index]
        if model.spec.bidirectional:
            native = native.forward_layer if direction == "forward" else native.backward_layer
        return native.cell
    if kind == "transformer":
        return _transformer_layer(model, layer)
    if kind == "cnn":
        candidates = model.stack
    elif layer == "head":
        return model.head
    elif layer.startswith("stem/"):
        candidates, layer = model.stem, layer.replace("/", "_")
    else:
        block_name, layer = layer.rsplit("/", 1)
        block = next(b for b in model.blocks if b.name == block_name.replace("/", "_"))
        candidates = block.canonical_layers()
    return next(candidate for candidate in candidates if candidate.name == layer)


# canonical attention projection -> MultiHeadAttention's EinsumDense sublayer
_ATTENTION_DENSE = {"query": "query_dense", "key": "key_dense", "value": "value_dense", "output": "output_dense"}


def _transformer_layer(model: keras.Model, layer: str) -> keras.layers.Layer:
    """``embedding``, ``position``, ``encoder_1/attention/query`` (an EinsumDense of its
    MultiHeadAttention), ``encoder_0/ffn_norm``, ``final_norm``, ``dense_0``."""
    match layer.split("/"):
        case ["embedding"]:
            return model.embedding
        case ["position"]:
            return model.positions
        case ["final_norm"]:
            return model.final_norm
        case ["dense_0"]:
            return model.head
        case [encoder, "attention", projection]:
            attention = model.encoders[int(encoder.removeprefix("encoder_"))].attention
            return getattr(attention, _ATTENTION_DENSE[projection])
        case [encoder, part]:
            return getattr(model.encoders[int(encoder.removeprefix("encoder_"))], part)
    raise KeyError(f"no Keras layer for canonical layer {layer!r}")


def canonical_variables(
    model: keras.Model, *, trainable_only: bool = False, names: Collection[str] | None = None
) -> dict[str, keras.Variable]:
    """The model's variables under canonical names, in the spec's order (BatchNorm's moving
    statistics too, unless ``trainable_only``; only those of ``names``, if given)."""
    named = {}
    for name, info in param_specs(model.spec).items():
        if (info.trainable or not trainable_only) and (names is None or name in names):
            layer, variable = name.rsplit("/", 1)
            named[name] = getattr(_layer(model, layer), variable)
    return named


def freeze(model: keras.Model) -> None:
    """Apply the spec's frozen layers the Keras way: ``layer.trainable = False``, which also puts a
    BatchNormalization layer in inference mode (the spec's "inference"). For "training", a frozen
    BatchNormalization stays trainable — on batch statistics, updating its moving ones — with only
    ``gamma`` and ``beta`` marked untrainable."""
    spec = model.spec
    for layer in layer_names(spec):
        if not is_frozen(spec, layer):
            continue
        native = _layer(model, layer)
        if isinstance(native, keras.layers.BatchNormalization) and spec.frozen_batchnorm == "training":
            native.gamma.trainable = native.beta.trainable = False
        else:
            native.trainable = False


def load(model: keras.Model, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params)
    infos = param_specs(model.spec)
    for name, variable in canonical_variables(model).items():
        variable.assign(swap_layout(model.spec, infos[name], checked[name]))


def export(model: keras.Model) -> dict[str, np.ndarray]:
    return to_canonical(model, {name: keras.ops.convert_to_numpy(v) for name, v in canonical_variables(model).items()})


def to_canonical(model: keras.Model, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays of the model's variables (values or gradients), by canonical name, in the canonical layout."""
    infos = param_specs(model.spec)
    return {name: swap_layout(model.spec, infos[name], np.asarray(value)) for name, value in arrays.items()}


def to_native(model: keras.Model, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical arrays (gradients, say), by canonical name, in the layout of the model's variables."""
    infos = param_specs(model.spec)
    return {name: swap_layout(model.spec, infos[name], value) for name, value in arrays.items()}
