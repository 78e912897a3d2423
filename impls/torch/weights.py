"""Canonical ⇄ torch names and layouts (conventions in :mod:`spec.params`).

torch stores a Linear weight as (out, in), a conv weight as (out, in, kh, kw), and flattens NCHW
feature maps in (c, h, w) order; canonical kernels are (in, out) and (kh, kw, in, out), flattened
in (h, w, c) order. Recurrent layers keep the canonical gate order (LSTM i, f, g, o; GRU r, z, n) in
``weight_ih_l<k>`` (G·H, in) and ``weight_hh_l<k>`` (G·H, H), ``_reverse`` for the backward
direction; the reset-"after" GRU's canonical (2, G·H) bias is ``bias_ih`` and ``bias_hh``. Every
conversion happens here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from spec.models import is_frozen
from spec.params import ParamInfo, check_params, layer_names, param_specs, rnn_layer_position

# canonical variable -> the torch attribute holding it (Linear/Conv2d weight and bias, BatchNorm's)
_ATTRIBUTE = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def _module(model: nn.Module, layer: str) -> nn.Module:
    """The module of canonical layer ``layer`` (``dense_1``, ``conv_0``, ``stage_1/block_0/conv_a`` …)."""
    if model.spec.kind == "mlp":
        return model.dense[int(layer.rsplit("_", 1)[1])]
    if model.spec.kind == "rnn":  # its one Linear: the recurrent layers are in _recurrent_tensors
        return model.head
    path = layer.replace("/", ".")
    if model.spec.kind == "cnn":
        return model.layers.get_submodule(path)
    return model.get_submodule(f"stages.{path}" if path.startswith("stage_") else path)


def _recurrent_tensors(model: nn.Module, layer: str, variable: str) -> tuple[torch.Tensor, ...]:
    """The torch tensor(s) of a canonical recurrent tensor: ``rnn_1/backward`` + ``kernel`` is
    ``rnn.weight_ih_l1_reverse``; a (2, G·H) GRU bias is ``bias_ih`` and ``bias_hh``."""
    index, direction = rnn_layer_position(layer)
    suffix = f"_l{index}" + ("_reverse" if direction == "backward" else "")
    if variable == "bias":
        kinds = ("ih", "hh") if model.spec.has_recurrent_bias else ("ih",)
        return tuple(getattr(model.rnn, f"bias_{kind}{suffix}") for kind in kinds)
    return (getattr(model.rnn, ("weight_ih" if variable == "kernel" else "weight_hh") + suffix),)


def canonical_tensors(model: nn.Module) -> dict[str, tuple[torch.Tensor, ...]]:
    """The torch tensor(s) holding each canonical tensor (parameters and BatchNorm buffers), in the
    spec's order: one each, except the reset-"after" GRU's bias, held by two."""
    tensors = {}
    for name, info in param_specs(model.spec).items():
        layer, variable = name.rsplit("/", 1)
        if info.is_recurrent:
            tensors[name] = _recurrent_tensors(model, layer, variable)
        else:
            tensors[name] = (getattr(_module(model, layer), _ATTRIBUTE[variable]),)
    return tensors


def canonical_parameters(model: nn.Module) -> dict[str, tuple[nn.Parameter, ...]]:
    """The trainable canonical tensors (the ones with gradients), in the spec's order."""
    infos = param_specs(model.spec)
    return {name: t for name, t in canonical_tensors(model).items() if infos[name].trainable}


def trained_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer updates, in the spec's order."""
    return [param for params in canonical_parameters(model).values() for param in params]


def to_native(info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """A canonical array in torch's layout (a (2, G·H) recurrent bias: one row per torch tensor)."""
    if info.layout == "recurrent":
        return value.T
    if info.layout == "conv":
        return value.transpose(3, 2, 0, 1)
    if info.layout == "dense":
        if info.flattened_from is not None:  # rows (h, w, c) -> (c, h, w)
            h, w, c = info.flattened_from
            value = value.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
        return value.T
    return value


def to_canonical(info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """A torch-layout array in the canonical layout."""
    if info.layout == "recurrent":
        return value.T
    if info.layout == "conv":
        return value.transpose(2, 3, 1, 0)
    if info.layout == "dense":
        value = value.T
        if info.flattened_from is not None:  # rows (c, h, w) -> (h, w, c)
            h, w, c = info.flattened_from
            value = value.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
    return value


def freeze(model: nn.Module) -> None:
    """Apply the spec's frozen layers: their parameters stop requiring gradients, and their BatchNorm
    layers stay in evaluation mode when ``spec.frozen_batchnorm`` is "inference" (torch's own
    requires_grad=False leaves BatchNorm on batch statistics, the spec's "training")."""
    spec = model.spec
    for layer in layer_names(spec):
        if is_frozen(spec, layer):
            module = _module(model, layer)
            module.requires_grad_(False)
            if spec.frozen_batchnorm == "inference" and isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                model.frozen_batchnorms = (*model.frozen_batchnorms, module)
    model.train(model.training)


def _split(native: np.ndarray, count: int) -> list[np.ndarray]:
    """A native array for ``count`` torch tensors: itself, or one row each (a (2, G·H) GRU bias)."""
    return [native] if count == 1 else list(native)


def _join(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.stack(arrays)


@torch.no_grad()
def load(model: nn.Module, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params)
    infos = param_specs(model.spec)
    for name, tensors in canonical_tensors(model).items():
        for tensor, part in zip(tensors, _split(to_native(infos[name], checked[name]), len(tensors)), strict=True):
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(part)))


def export(model: nn.Module) -> dict[str, np.ndarray]:
    # np.array copies: on the CPU .numpy() shares memory with the parameter, which training would
    # then change under the caller's feet.
    infos = param_specs(model.spec)
    return {
        name: np.array(to_canonical(infos[name], _join([t.detach().cpu().numpy() for t in tensors])), order="C")
        for name, tensors in canonical_tensors(model).items()
    }


def set_grads(model: nn.Module, grads: Mapping[str, np.ndarray]) -> None:
    """Put canonical gradients into each parameter's ``.grad``, as ``backward()`` would."""
    checked = check_params(model.spec, grads, source="gradients", trainable_only=True)
    infos = param_specs(model.spec)
    for name, params in canonical_parameters(model).items():
        for param, part in zip(params, _split(to_native(infos[name], checked[name]), len(params)), strict=True):
            param.grad = torch.from_numpy(np.ascontiguousarray(part)).to(param.device)


def export_grads(model: nn.Module) -> dict[str, np.ndarray]:
    """Gradients after ``backward()``, in the canonical layout of their parameters."""
    infos = param_specs(model.spec)
    return {
        name: np.array(to_canonical(infos[name], _join([p.grad.detach().cpu().numpy() for p in params])), order="C")
        for name, params in canonical_parameters(model).items()
    }
