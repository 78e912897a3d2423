"""Canonical ⇄ torch names and layouts.

``nn.Linear`` stores its weight as (out, in) and computes ``x @ weight.T``; the canonical kernel is
(in, out), so kernels are transposed here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from spec.models import MLPSpec
from spec.params import check_params, dense_name


def canonical_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The model's parameters under canonical names, in the spec's order."""
    spec: MLPSpec = model.spec
    named = {}
    for i, layer in enumerate(model.dense):
        named[f"{dense_name(i)}/kernel"] = layer.weight
        if spec.use_bias:
            named[f"{dense_name(i)}/bias"] = layer.bias
    return named


def to_native(name: str, value: np.ndarray) -> np.ndarray:
    """A canonical array in torch's layout for parameter ``name``."""
    return value.T if name.endswith("/kernel") else value


def to_canonical(name: str, value: np.ndarray) -> np.ndarray:
    """A torch-layout array in the canonical layout for parameter ``name``."""
    return value.T if name.endswith("/kernel") else value


@torch.no_grad()
def load(model: nn.Module, params: Mapping[str, np.ndarray]) -> None:
    checked = check_params(model.spec, params)
    for name, param in canonical_parameters(model).items():
        param.copy_(torch.from_numpy(np.ascontiguousarray(to_native(name, checked[name]))))


def export(model: nn.Module) -> dict[str, np.ndarray]:
    # np.array copies: on the CPU .numpy() shares memory with the parameter, which training would
    # then change under the caller's feet.
    return {
        name: np.array(to_canonical(name, param.detach().cpu().numpy()), order="C")
        for name, param in canonical_parameters(model).items()
    }


def set_grads(model: nn.Module, grads: Mapping[str, np.ndarray]) -> None:
    """Put canonical gradients into each parameter's ``.grad``, as ``backward()`` would."""
    checked = check_params(model.spec, grads, source="gradients")
    for name, param in canonical_parameters(model).items():
        param.grad = torch.from_numpy(np.ascontiguousarray(to_native(name, checked[name]))).to(param.device)


def export_grads(model: nn.Module) -> dict[str, np.ndarray]:
    """Gradients after ``backward()``, in the canonical layout of their parameters."""
    return {
        name: np.array(to_canonical(name, param.grad.detach().cpu().numpy()), order="C")
        for name, param in canonical_parameters(model).items()
    }
