"""The spec's learning-rate schedules (:mod:`spec.schedules`) as ``optax.schedules``."""

from __future__ import annotations

import numpy as np
import optax

from spec.schedules import ScheduleSpec


def make_schedule(s: ScheduleSpec) -> optax.Schedule:
    """A native schedule of Optax's 0-based update count."""
    match s.kind:
        case "constant":
            return optax.constant_schedule(s.learning_rate)
        case "step":
            return optax.exponential_decay(
                s.learning_rate, transition_steps=s.step_size, decay_rate=s.gamma, staircase=True
            )
        case "exponential":
            return optax.exponential_decay(s.learning_rate, transition_steps=1, decay_rate=s.gamma)
        case "cosine":
            # Optax's floor is a fraction `alpha` of the initial rate.
            assert s.floor is not None  # ScheduleSpec requires it for cosine
            return optax.cosine_decay_schedule(
                s.learning_rate, decay_steps=s.total_steps, alpha=s.floor / s.learning_rate
            )
        case "warmup_cosine":
            # Optax's `decay_steps` include the warm-up; `end_value` is absolute.
            return optax.warmup_cosine_decay_schedule(
                init_value=s.warmup_start,
                peak_value=s.learning_rate,
                warmup_steps=s.warmup_steps,
                decay_steps=s.total_steps,
                end_value=s.floor,
            )
    raise ValueError(f"no Optax schedule for {s.kind!r}")


def learning_rates(s: ScheduleSpec) -> list[float]:
    """The rate Optax applies at steps 0 … total_steps − 1 under the native schedule."""
    schedule = make_schedule(s)
    return [float(np.asarray(schedule(step))) for step in range(s.total_steps)]
