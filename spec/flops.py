"""Floating-point operations per step, from a spec alone, for the benchmarks' achieved FLOP/s.

Counts multiply–adds of the dense layers as two operations (the convention of published peak
figures); activations, losses and optimizer updates are a few operations per element and are left
out, so the figures are slight underestimates.
"""

from __future__ import annotations

from itertools import pairwise

from spec.models import MLPSpec, ModelSpec
from spec.validation import check_positive_int


def forward_flops(spec: ModelSpec, batch: int) -> int:
    """Operations of one forward pass over ``batch`` examples."""
    check_positive_int("batch", batch)
    if not isinstance(spec, MLPSpec):
        raise TypeError(f"no FLOP count for {type(spec).__name__}")
    return 2 * batch * sum(fan_in * fan_out for fan_in, fan_out in pairwise(spec.layer_sizes))


def train_step_flops(spec: ModelSpec, batch: int) -> int:
    """Operations of one training step: the forward pass, and a backward pass of twice its cost
    (the gradient with respect to each layer's input and to its weights)."""
    return 3 * forward_flops(spec, batch)
