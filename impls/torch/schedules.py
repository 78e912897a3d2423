"""The spec's learning-rate schedules (:mod:`spec.schedules`) as ``torch.optim.lr_scheduler``s."""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from spec.schedules import ScheduleSpec


def make_scheduler(optimizer: torch.optim.Optimizer, s: ScheduleSpec) -> lr_scheduler.LRScheduler:
    """A native scheduler for ``optimizer`` (whose lr must be ``s.learning_rate``). Call its ``step()``
    once after every ``optimizer.step()``: the lr in force at update t is then the spec's value at t."""
    match s.kind:
        case "constant":
            return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        case "step":
            # ScheduleSpec requires each field its kind uses (here and below)
            assert s.step_size is not None and s.gamma is not None
            return lr_scheduler.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
        case "exponential":
            assert s.gamma is not None
            return lr_scheduler.ExponentialLR(optimizer, gamma=s.gamma)
        case "cosine":
            assert s.floor is not None
            # eta_min is an absolute rate, like the spec's floor. (Past T_max torch's cosine rises
            # again; the spec's schedules end at total_steps.)
            return lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.total_steps, eta_min=s.floor)
        case "warmup_cosine":
            assert s.warmup_start is not None and s.warmup_steps is not None and s.floor is not None
            warmup = lr_scheduler.LinearLR(
                optimizer, start_factor=s.warmup_start / s.learning_rate, end_factor=1.0, total_iters=s.warmup_steps
            )
            decay = lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.total_steps - s.warmup_steps, eta_min=s.floor)
            return lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[s.warmup_steps])
    raise ValueError(f"no torch scheduler for {s.kind!r}")


def learning_rates(s: ScheduleSpec) -> list[float]:
    """The rate a torch optimizer applies at steps 0 … total_steps − 1 under the native scheduler."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=s.learning_rate)
    scheduler = make_scheduler(optimizer, s)
    rates = []
    for _ in range(s.total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates
