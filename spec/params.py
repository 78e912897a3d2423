"""Canonical parameters: the one naming and layout convention every backend converts to and from.

Layout convention (the only place it is defined):

* Parameters are a flat ordered mapping ``name -> numpy array``. Names are ``<layer>/<variable>``,
  layers numbered from the input: an MLP with two hidden layers has ``dense_0``, ``dense_1`` and
  ``dense_2`` (the output layer), each with ``kernel`` and, when the spec has biases, ``bias``.
* Dense kernels are ``(in, out)``: ``y = x @ kernel + bias``. (torch stores ``(out, in)``; its
  backend transposes at its edge.)
* Images are NHWC; conv kernels ``(kh, kw, in, out)``; recurrent kernels concatenate their gates
  along the last axis in the order the spec documents; attention q/k/v kernels are
  ``(d_model, heads, head_dim)``. (These arrive with the vision and sequence models.)
* Trainable parameters and state tensors (e.g. BatchNorm running statistics) share the mapping; each
  entry says whether it is trainable.
* Canonical values are float32 when exchanged with backends; the judge promotes them to float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from spec.errors import ParamError
from spec.models import MLPSpec, ModelSpec

CANONICAL_DTYPE = np.float32


@dataclass(frozen=True)
class ParamInfo:
    """Shape and role of one canonical tensor."""

    shape: tuple[int, ...]
    trainable: bool
    initializer: str
    fan_in: int
    fan_out: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    non_trainable: int

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def dense_name(index: int) -> str:
    """Canonical name of the ``index``-th Dense layer (0 = first after the input)."""
    return f"dense_{index}"


def param_specs(spec: ModelSpec) -> dict[str, ParamInfo]:
    """Every canonical tensor of ``spec``, in a fixed order: ``name -> ParamInfo``."""
    if not isinstance(spec, MLPSpec):
        raise ParamError(f"no canonical parameters defined for spec type {type(spec).__name__}")
    infos: dict[str, ParamInfo] = {}
    sizes = spec.layer_sizes
    for i, (fan_in, fan_out) in enumerate(pairwise(sizes)):
        layer = dense_name(i)
        infos[f"{layer}/kernel"] = ParamInfo((fan_in, fan_out), True, spec.kernel_initializer, fan_in, fan_out)
        if spec.use_bias:
            infos[f"{layer}/bias"] = ParamInfo((fan_out,), True, spec.bias_initializer, fan_in, fan_out)
    return infos


def count_params(spec: ModelSpec) -> ParamCount:
    """Trainable and non-trainable scalar counts, derived from the spec alone."""
    infos = param_specs(spec).values()
    return ParamCount(
        trainable=sum(p.size for p in infos if p.trainable),
        non_trainable=sum(p.size for p in infos if not p.trainable),
    )


def init_params(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Deterministic canonical parameters for ``spec``: the same seed gives the same arrays anywhere.

    Each tensor draws from its own stream keyed by (seed, position), so adding a layer does not change
    the values of the layers before it.
    """
    params = {}
    for position, (name, info) in enumerate(param_specs(spec).items()):
        rng = np.random.default_rng([seed, position])
        params[name] = sample_initializer(info, rng).astype(CANONICAL_DTYPE)
    return params


_TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]


def sample_initializer(info: ParamInfo, rng: np.random.Generator) -> np.ndarray:
    """Draw one tensor from its initializer (definitions in :mod:`spec.models`), in float64."""
    fan_in, fan_out, shape = info.fan_in, info.fan_out, info.shape
    match info.initializer:
        case "zeros":
            return np.zeros(shape)
        case "glorot_uniform":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, shape)
        case "glorot_normal":
            return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
        case "he_uniform":
            limit = math.sqrt(6.0 / fan_in)
            return rng.uniform(-limit, limit, shape)
        case "he_normal":
            return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        case "lecun_normal":
            return _truncated_standard_normal(rng, shape) * (math.sqrt(1.0 / fan_in) / _TRUNCATED_NORMAL_STD)
        case "torch_default":
            limit = 1.0 / math.sqrt(fan_in)
            return rng.uniform(-limit, limit, shape)
    raise ParamError(f"unknown initializer {info.initializer!r}")


def _truncated_standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, 1) restricted to [-2, 2], by redrawing the samples outside."""
    out = rng.standard_normal(shape)
    outside = np.abs(out) > 2
    while outside.any():
        out[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(out) > 2
    return out


def check_params(
    spec: ModelSpec, params: Mapping[str, np.ndarray], *, source: str = "parameters"
) -> dict[str, np.ndarray]:
    """Validate ``params`` against ``spec`` and return them as float32 arrays in canonical order.

    A missing, unexpected, mis-shaped, non-numeric or non-finite tensor raises :class:`ParamError`
    naming it; ``source`` says where the parameters came from (e.g. a file name).
    """
    expected = param_specs(spec)
    missing = [n for n in expected if n not in params]
    unexpected = [n for n in params if n not in expected]
    if missing or unexpected:
        raise ParamError(
            f"{source}: names do not match spec {spec.name!r}: missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}; expected names: {list(expected)}"
        )
    checked = {}
    for name, info in expected.items():
        value = np.asarray(params[name])
        if value.shape != info.shape:
            raise ParamError(
                f"{source}: parameter {name!r} has shape {value.shape}, spec {spec.name!r} needs {info.shape}"
            )
        if not np.issubdtype(value.dtype, np.floating):
            raise ParamError(f"{source}: parameter {name!r} has dtype {value.dtype}, expected a float dtype")
        if not np.all(np.isfinite(value)):
            raise ParamError(f"{source}: parameter {name!r} contains NaN or infinity")
        checked[name] = value.astype(CANONICAL_DTYPE)
    return checked
