"""Learning-rate schedules, defined on steps 0 … total_steps − 1 (0-based: step 0 is the first update).

The judge's value at step t (:func:`spec.reference.learning_rate`), with lr the base rate:

* ``constant``: lr.
* ``step``: lr·γ^⌊t / step_size⌋.
* ``exponential``: lr·γ^t.
* ``cosine``: floor + (lr − floor)·(1 + cos(π·t / total_steps)) / 2. ``floor`` is an absolute rate
  (torch's ``eta_min``); Keras and Optax take it as a fraction ``alpha`` of lr, converted at their edge.
* ``warmup_cosine``: linear from ``warmup_start`` to lr over ``warmup_steps`` steps, then the cosine
  above from lr to ``floor`` over the remaining ``total_steps − warmup_steps`` steps. (Keras counts
  its ``decay_steps`` after the warm-up, Optax counts them from step 0: each backend converts.)
"""

from __future__ import annotations

from dataclasses import dataclass

from spec.errors import SpecError
from spec.validation import check_number, check_positive_int

SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup_cosine")
_FIELDS = {
    "constant": set(),
    "step": {"gamma", "step_size"},
    "exponential": {"gamma"},
    "cosine": {"floor"},
    "warmup_cosine": {"floor", "warmup_steps", "warmup_start"},
}
_UNSET = {"gamma": None, "step_size": None, "floor": None, "warmup_steps": None, "warmup_start": None}


@dataclass(frozen=True)
class ScheduleSpec:
    """A learning-rate schedule; every field its kind uses is required (see the module docstring)."""

    kind: str
    learning_rate: float
    total_steps: int
    gamma: float | None = None
    step_size: int | None = None
    floor: float | None = None
    warmup_steps: int | None = None
    warmup_start: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise SpecError("schedule", self.kind, SCHEDULES)
        used = _FIELDS[self.kind]
        for name in _UNSET:
            value = getattr(self, name)
            if name in used and value is None:
                raise SpecError(f"schedule.{name}", None, f"an explicit value for {self.kind}")
            if name not in used and value is not None:
                raise SpecError(f"schedule.{name}", value, f"unset for {self.kind} (it does not use it)")
        check_number("schedule.learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_positive_int("schedule.total_steps", self.total_steps)
        if self.gamma is not None:
            check_number("schedule.gamma", self.gamma, low=0.0, high=1.0, low_open=True)
        if self.step_size is not None:
            check_positive_int("schedule.step_size", self.step_size)
        if self.floor is not None:
            check_number("schedule.floor", self.floor, low=0.0)
            if self.floor > self.learning_rate:
                raise SpecError("schedule.floor", self.floor, f"at most learning_rate ({self.learning_rate:g})")
        if self.warmup_steps is not None:
            check_positive_int("schedule.warmup_steps", self.warmup_steps)
            if self.warmup_steps >= self.total_steps:
                raise SpecError(
                    "schedule.warmup_steps", self.warmup_steps, f"fewer than total_steps ({self.total_steps})"
                )
        if self.warmup_start is not None:
            # torch's LinearLR needs a start factor > 0, so a warm-up starts above zero.
            check_number("schedule.warmup_start", self.warmup_start, low=0.0, low_open=True)
            if self.warmup_start > self.learning_rate:
                raise SpecError("schedule.warmup_start", self.warmup_start, "at most learning_rate")
