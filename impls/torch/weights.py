"""Canonical ⇄ torch names and layouts (conventions in :mod:`spec.params`).

torch stores a Linear weight as (out, in), a conv weight as (out, in, kh, kw), and flattens NCHW
feature maps in (c, h, w) order; canonical kernels are (in, out) and (kh, kw, in, out), flattened
in (h, w, c) order. Every conversion happens here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from spec.models import is_frozen
from spec.params import ParamInfo, check_params, layer_names, param_specs

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
    path = layer.replace("/", ".")
    if model.spec.kind == "cnn":
        return model.layers.get_submodule(path)
    return model.get_submodule(f"stages.{path}" if path.startswith("stage_") else path)


def canonical_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every canonical tensor (parameters and BatchNorm buffers) of the model, in the spec's order."""
    tensors = {}
    for name in param_specs(model.spec):
        layer, variable = name.rsplit("/", 1)
        tensors[name] = getattr(_module(model, layer), _ATTRIBUTE[variable])
    return tensors


def canonical_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable canonical tensors (the ones with gradients), in the spec's order."""
    infos = param_specs(model.spec)
    return {name: t for name, t in canonical_tensors(model).items() if infos[name].trainable}


def to_native(info: ParamInfo, value: np.ndarray) -> np.ndarray:
    """A canonical array in torch's layout."""
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


@torch.no_grad()
def load(model: nn.Module, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params)
    infos = param_specs(model.spec)
    for name, tensor in canonical_tensors(model).items():
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(to_native(infos[name], checked[name]))))


def export(model: nn.Module) -> dict[str, np.ndarray]:
    # np.array copies: on the CPU .numpy() shares memory with the parameter, which training would
    # then change under the caller's feet.
    infos = param_specs(model.spec)
    return {
        name: np.array(to_canonical(infos[name], tensor.detach().cpu().numpy()), order="C")
        for name, tensor in canonical_tensors(model).items()
    }


def set_grads(model: nn.Module, grads: Mapping[str, np.ndarray]) -> None:
    """Put canonical gradients into each parameter's ``.grad``, as ``backward()`` would."""
    checked = check_params(model.spec, grads, source="gradients", trainable_only=True)
    infos = param_specs(model.spec)
    for name, param in canonical_parameters(model).items():
        native = np.ascontiguousarray(to_native(infos[name], checked[name]))
        param.grad = torch.from_numpy(native).to(param.device)


def export_grads(model: nn.Module) -> dict[str, np.ndarray]:
    """Gradients after ``backward()``, in the canonical layout of their parameters."""
    infos = param_specs(model.spec)
    return {
        name: np.array(to_canonical(infos[name], param.grad.detach().cpu().numpy()), order="C")
        for name, param in canonical_parameters(model).items()
    }
