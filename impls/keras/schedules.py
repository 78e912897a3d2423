"""The spec's learning-rate schedules (:mod:`spec.schedules`) as ``keras.optimizers.schedules``."""

from __future__ import annotations

import keras

from spec.schedules import ScheduleSpec


def make_schedule(s: ScheduleSpec) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A native schedule, called by Keras optimizers with their 0-based ``iterations``."""
    schedules = keras.optimizers.schedules
    match s.kind:
        case "constant":
            return s.learning_rate
        case "step":
            return schedules.ExponentialDecay(
                s.learning_rate, decay_steps=s.step_size, decay_rate=s.gamma, staircase=True
            )
        case "exponential":
            return schedules.ExponentialDecay(s.learning_rate, decay_steps=1, decay_rate=s.gamma)
        case "cosine":
            assert s.floor is not None  # required for this kind (ScheduleSpec.__post_init__)
            # Keras's floor is a fraction `alpha` of the initial rate.
            return schedules.CosineDecay(s.learning_rate, decay_steps=s.total_steps, alpha=s.floor / s.learning_rate)
        case "warmup_cosine":
            # Keras warms up from `initial_learning_rate` to `warmup_target`, and its `decay_steps` count
            # from the end of the warm-up; `alpha` is a fraction of the warm-up target.
            assert s.floor is not None and s.warmup_steps is not None  # required for this kind
            return schedules.CosineDecay(
                s.warmup_start,
                decay_steps=s.total_steps - s.warmup_steps,
                alpha=s.floor / s.learning_rate,
                warmup_target=s.learning_rate,
                warmup_steps=s.warmup_steps,
            )
    raise ValueError(f"no Keras schedule for {s.kind!r}")


def learning_rates(s: ScheduleSpec) -> list[float]:
    """The rate a Keras optimizer applies at steps 0 … total_steps − 1 under the native schedule."""
    schedule = make_schedule(s)
    if not callable(schedule):
        return [schedule] * s.total_steps
    return [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(s.total_steps)]
