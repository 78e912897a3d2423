"""Canonical ⇄ torch names and layouts (conventions in :mod:`spec.params`).

torch stores a Linear weight as (out, in), a conv weight as (out, in, kh, kw), and flattens NCHW
feature maps in (c, h, w) order; canonical kernels are (in, out) and (kh, kw, in, out), flattened
in (h, w, c) order. Recurrent layers keep the canonical gate order (LSTM i, f, g, o; GRU r, z, n) in
``weight_ih_l<k>`` (G·H, in) and ``weight_hh_l<k>`` (G·H, H), ``_reverse`` for the backward
direction; the reset-"after" GRU's canonical (2, G·H) bias is ``bias_ih`` and ``bias_hh``. An
attention layer's q, k and v are packed as the rows of ``in_proj_weight`` (3·d_model, d_model) and
``in_proj_bias``; ``out_proj.weight`` is (d_model, heads·head_dim). Every conversion happens here
and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from impls.torch.models import SpecModel
from spec.errors import UnsupportedOption, WeightFileError
from spec.layer_paths import resolve
from spec.models import is_frozen
from spec.params import ParamInfo, check_params, layer_names, param_specs, rnn_layer_position, variable_dtype

# canonical variable -> the torch attribute holding it (Linear/Conv2d weight and bias, the norms',
# an Embedding's table)
_ATTRIBUTE = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "embeddings": "weight",
}


def native_layer(model: SpecModel, layer: str) -> nn.Module:
    """The module of canonical layer ``layer``, where the model recorded it (``model.layer_paths``)."""
    module = resolve(model, model.layer_paths[layer])
    assert isinstance(module, nn.Module)  # the torch models record paths to their layers' modules
    return module


def _tensors(
    model: SpecModel, layer: str, variable: str, info: ParamInfo
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The torch tensor(s) holding a canonical tensor, and those torch adds to them (see :class:`Binding`)."""
    module = native_layer(model, layer)
    if info.is_recurrent:  # a layer of an RNN, recorded at its one nn.RNN/LSTM/GRU
        assert isinstance(module, nn.RNNBase)
        return _recurrent_tensors(info, module, layer, variable)
    if isinstance(module, nn.MultiheadAttention):  # q, k and v: row blocks of one packed tensor
        return (module.in_proj_weight if variable == "kernel" else module.in_proj_bias,), ()
    return (getattr(module, _ATTRIBUTE[variable]),), ()


def _recurrent_tensors(
    info: ParamInfo, rnn: nn.RNNBase, layer: str, variable: str
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The tensor(s) of a canonical recurrent tensor in the one ``nn.RNN``/``LSTM``/``GRU`` of the
    model, and those torch adds to them: ``rnn_1/backward`` + ``kernel`` is ``weight_ih_l1_reverse``;
    a (2, G·H) GRU bias is ``bias_ih`` and ``bias_hh``; a SimpleRNN's or LSTM's one bias is
    ``bias_ih``, plus the ``bias_hh`` its cell adds to it."""
    index, direction = rnn_layer_position(layer)
    suffix = f"_l{index}" + ("_reverse" if direction == "backward" else "")
    if variable == "bias":
        ih, hh = (getattr(rnn, f"bias_{kind}{suffix}") for kind in ("ih", "hh"))
        two_biases = len(info.shape) == 2  # (2, G·H): input and recurrent bias, the reset-"after" GRU's
        return ((ih, hh), ()) if two_biases else ((ih,), (hh,))
    return (getattr(rnn, ("weight_ih" if variable == "kernel" else "weight_hh") + suffix),), ()


@dataclass(frozen=True)
class Binding:
    """Canonical tensors and the torch tensors that hold them: flattened and concatenated in order,
    the canonical ones (each in torch's layout) and the torch ones hold the same values. Mostly one
    to one; a reset-"after" GRU bias is two torch tensors (``bias_ih``, ``bias_hh``), and an
    attention layer's q, k and v kernels are one (``in_proj_weight``), as are their biases."""

    names: tuple[str, ...]
    tensors: tuple[torch.Tensor, ...]
    # Held tensors, one per tensor or none: what torch adds to each tensor where the spec has one
    # (a SimpleRNN's or LSTM's bias_hh, beside its bias_ih). The canonical value is the sum, so a
    # state dict with a non-zero bias_hh exports what the model computes; loading zeroes them again.
    held: tuple[torch.Tensor, ...] = ()

    def values(self) -> list[np.ndarray]:
        """What the torch tensors hold, each with its held tensor added."""
        added = self.held or (None,) * len(self.tensors)
        return [(t if h is None else t + h).detach().cpu().numpy() for t, h in zip(self.tensors, added, strict=True)]


def bindings(model: SpecModel) -> list[Binding]:
    """Every canonical tensor's binding (BatchNorm buffers included), in the spec's order."""
    grouped: dict[tuple[int, ...], Binding] = {}
    for name, info in param_specs(model.spec).items():
        layer, variable = name.rsplit("/", 1)
        tensors, held = _tensors(model, layer, variable, info)
        key = tuple(id(t) for t in tensors)
        known = grouped.get(key)
        grouped[key] = replace(known, names=(*known.names, name)) if known else Binding((name,), tensors, held)
    return list(grouped.values())


def trained_bindings(model: SpecModel, names: Collection[str] | None = None) -> list[Binding]:
    """The bindings of the trainable canonical tensors (the ones with gradients), or of ``names``."""
    infos = param_specs(model.spec)
    return [b for b in bindings(model) if infos[b.names[0]].trainable and (names is None or b.names[0] in names)]


def trained_parameters(model: SpecModel, names: Collection[str] | None = None) -> list[torch.Tensor]:
    """The parameters an optimizer updates (those of ``names`` only, if given), in the spec's order."""
    return [param for binding in trained_bindings(model, names) for param in binding.tensors]


def to_native(info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """A canonical array in torch's layout (a (2, G·H) recurrent bias: one row per torch tensor)."""
    match info.layout:
        case "recurrent":
            return value.T
        case "conv":
            return value.transpose(3, 2, 0, 1)
        case "conv_transpose":  # (kh, kw, in, out) -> (in, out, kh, kw)
            return value.transpose(2, 3, 0, 1)
        case "attention_in":  # (d_model, heads, head_dim) -> rows of in_proj_weight, head-major
            return value.reshape(value.shape[0], -1).T
        case "attention_bias":
            return value.reshape(-1)
        case "attention_out":  # (heads, head_dim, d_model) -> out_proj.weight (d_model, heads·head_dim)
            return value.reshape(-1, value.shape[-1]).T
        case "dense":
            if info.flattened_from is not None:  # rows (h, w, c) -> (c, h, w)
                h, w, c = info.flattened_from
                value = value.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
            return _features_to_chw(info, value).T
    return _features_to_chw(info, value)


def _features_to_chw(info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """Last axis (h, w, c) -> (c, h, w) for a tensor feeding a Reshape (torch unflattens NCHW)."""
    if info.reshaped_to is None:
        return value
    return np.moveaxis(value.reshape(*value.shape[:-1], *info.reshaped_to), -1, -3).reshape(value.shape)


def _features_to_hwc(info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """Last axis (c, h, w) -> (h, w, c): the inverse of :func:`_features_to_chw`."""
    if info.reshaped_to is None:
        return value
    h, w, c = info.reshaped_to
    return np.moveaxis(value.reshape(*value.shape[:-1], c, h, w), -3, -1).reshape(value.shape)


def to_canonical(info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """A torch-layout array in the canonical layout."""
    match info.layout:
        case "recurrent":
            return value.T
        case "conv":
            return value.transpose(2, 3, 1, 0)
        case "conv_transpose":
            return value.transpose(2, 3, 0, 1)
        case "attention_in" | "attention_out":
            return value.T.reshape(info.shape)
        case "attention_bias":
            return value.reshape(info.shape)
        case "dense":
            value = value.T
            if info.flattened_from is not None:  # rows (c, h, w) -> (h, w, c)
                h, w, c = info.flattened_from
                value = value.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
    return _features_to_hwc(info, value)


def freeze(model: SpecModel) -> None:
    """Apply the spec's frozen layers: their parameters stop requiring gradients, and their BatchNorm
    layers stay in evaluation mode when ``spec.frozen_batchnorm`` is "inference" (torch's own
    requires_grad=False leaves BatchNorm on batch statistics, the spec's "training")."""
    spec = model.spec
    for binding in bindings(model):  # by tensor: one torch tensor may hold several canonical layers
        frozen = {is_frozen(spec, name.rsplit("/", 1)[0]) for name in binding.names}
        if frozen == {True, False}:
            raise UnsupportedOption(
                "torch", "frozen", spec.frozen, f"torch holds {list(binding.names)} in one tensor: all or none"
            )
        if frozen == {True}:
            for tensor in binding.tensors:
                tensor.requires_grad_(False)
    for layer in layer_names(spec):
        module = native_layer(model, layer)
        batchnorm = isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))
        if batchnorm and is_frozen(spec, layer) and spec.frozen_batchnorm == "inference":
            model.frozen_batchnorms = (*model.frozen_batchnorms, module)
    model.train(model.training)


def _to_tensors(
    binding: Binding, canonical: Mapping[str, np.ndarray], infos: Mapping[str, ParamInfo]
) -> list[np.ndarray]:
    """Canonical arrays of a binding as arrays shaped like its torch tensors."""
    flat = np.concatenate([to_native(infos[n], canonical[n]).ravel() for n in binding.names])
    cuts = np.cumsum([t.numel() for t in binding.tensors])[:-1]
    return [np.ascontiguousarray(part).reshape(t.shape) for part, t in zip(np.split(flat, cuts), binding.tensors)]


def _to_canonical(binding: Binding, arrays: list[np.ndarray], infos: Mapping[str, ParamInfo]) -> dict[str, np.ndarray]:
    """The torch tensors' values (or gradients) of a binding as its canonical arrays."""
    flat = np.concatenate([a.ravel() for a in arrays])
    native_shapes = [to_native(infos[n], np.empty(infos[n].shape)).shape for n in binding.names]
    cuts = np.cumsum([math.prod(shape) for shape in native_shapes])[:-1]
    return {
        name: np.array(to_canonical(infos[name], part.reshape(shape)), order="C")
        for name, part, shape in zip(binding.names, np.split(flat, cuts), native_shapes)
    }


@torch.no_grad()
def load(model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params, dtype=variable_dtype(model.precision))
    infos = param_specs(model.spec)
    for binding in bindings(model):
        for tensor, part in zip(binding.tensors, _to_tensors(binding, checked, infos), strict=True):
            tensor.copy_(torch.from_numpy(part))
        for tensor in binding.held:
            tensor.zero_()


def export(model: SpecModel) -> dict[str, np.ndarray]:
    # _to_canonical copies: on the CPU .numpy() shares memory with the parameter, which training
    # would then change under the caller's feet.
    infos = param_specs(model.spec)
    exported: dict[str, np.ndarray] = {}
    for binding in bindings(model):
        exported |= _to_canonical(binding, binding.values(), infos)
    return {name: exported[name] for name in infos}


def set_grads(model: SpecModel, grads: Mapping[str, np.ndarray], names: Collection[str] | None = None) -> None:
    """Put canonical gradients (of every trainable tensor, or of ``names``) into each parameter's
    ``.grad``, as ``backward()`` would."""
    checked = check_params(
        model.spec, grads, source="gradients", trainable_only=True, names=names, dtype=variable_dtype(model.precision)
    )
    infos = param_specs(model.spec)
    for binding in trained_bindings(model, names):
        for param, part in zip(binding.tensors, _to_tensors(binding, checked, infos), strict=True):
            param.grad = torch.from_numpy(part).to(param.device)


def export_grads(model: SpecModel, names: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Gradients after ``backward()`` (of every trainable tensor, or of ``names``), in the canonical
    layout of their parameters."""
    infos = param_specs(model.spec)
    grads: dict[str, np.ndarray] = {}
    for binding in trained_bindings(model, names):
        # torch's stub types .grad as Tensor | None; backward() has set it on every trained tensor
        arrays = [p.grad.detach().cpu().numpy() for p in binding.tensors]  # type: ignore[union-attr]
        grads |= _to_canonical(binding, arrays, infos)
    return {name: grads[name] for name in infos if name in grads}


# where a training checkpoint keeps the model's state dict (the texts' torch.save({..., "model_state_dict": ...}))
CHECKPOINT_KEYS = ("model_state_dict", "state_dict")


def save_state_file(module: nn.Module, path: str | Path) -> Path:
    """The module's state dict, saved by ``torch.save``."""
    path = Path(path)
    torch.save(module.state_dict(), path)
    return path


def load_state_file(module: nn.Module, path: str | Path) -> None:
    """Load a state dict saved with ``torch.save`` into ``module`` — the dict itself, or a training
    checkpoint holding it under one of :data:`CHECKPOINT_KEYS` — every tensor required (``strict``):
    a missing, unexpected or mis-shaped tensor raises naming the file and the tensor."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"checkpoint {str(path)!r} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated zip, a pickle with code in it, not a torch file at all
        why = f"{type(exc).__name__}: {exc}"
        raise WeightFileError(f"checkpoint {str(path)!r} is not a readable torch file ({why})") from exc
    state = loaded
    if isinstance(loaded, dict):
        state = next((loaded[key] for key in CHECKPOINT_KEYS if isinstance(loaded.get(key), dict)), loaded)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightFileError(
            f"checkpoint {str(path)!r} holds no state dict (a mapping of names to tensors, itself or under "
            f"{' or '.join(CHECKPOINT_KEYS)})"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # torch's message lists the missing and unexpected keys and the shapes
        raise WeightFileError(f"checkpoint {str(path)!r} does not fit {type(module).__name__}: {exc}") from exc
