"""Learning-rate schedules: the judge by hand, every backend's native schedule vs the judge, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.errors import SpecError
from spec.schedules import ScheduleSpec
from spec.tolerances import max_scaled_error, tolerance

CASES = {
    "constant": ScheduleSpec("constant", 0.1, 10),
    "step": ScheduleSpec("step", 0.1, 20, gamma=0.5, step_size=3),
    "exponential": ScheduleSpec("exponential", 0.1, 20, gamma=0.9),
    "cosine": ScheduleSpec("cosine", 0.1, 20, floor=0.01),
    "cosine_to_zero": ScheduleSpec("cosine", 0.05, 16, floor=0.0),
    "warmup_cosine": ScheduleSpec("warmup_cosine", 0.1, 20, floor=0.001, warmup_steps=5, warmup_start=0.01),
}


def judge_rates(s: ScheduleSpec) -> np.ndarray:
    return np.array([ref.learning_rate(s, t) for t in range(s.total_steps)])


@pytest.mark.parametrize("case", list(CASES))
def test_native_schedule_matches_the_judge(backend: Backend, case: str) -> None:
    s = CASES[case]
    rates = np.asarray(backend.learning_rates(s), np.float64)
    assert rates.shape == (s.total_steps,)
    tol = tolerance("schedule", "float32", backend.device())
    assert max_scaled_error(rates / s.learning_rate, judge_rates(s) / s.learning_rate, tol) <= 1.0


def test_judge_by_hand() -> None:
    assert ref.learning_rate(CASES["step"], 5) == pytest.approx(0.1 * 0.5)  # ⌊5/3⌋ = 1 decay
    assert ref.learning_rate(CASES["step"], 6) == pytest.approx(0.1 * 0.25)
    assert ref.learning_rate(CASES["exponential"], 2) == pytest.approx(0.1 * 0.81)
    cosine = CASES["cosine"]
    assert ref.learning_rate(cosine, 0) == pytest.approx(0.1)
    assert ref.learning_rate(cosine, 10) == pytest.approx((0.1 + 0.01) / 2)  # half-way down the cosine
    warm = CASES["warmup_cosine"]
    assert ref.learning_rate(warm, 0) == pytest.approx(0.01)
    assert ref.learning_rate(warm, 2) == pytest.approx(0.01 + 0.09 * 2 / 5)
    assert ref.learning_rate(warm, 5) == pytest.approx(0.1)  # the peak, then 15 cosine steps
    assert ref.learning_rate(warm, 19) == pytest.approx(0.001 + 0.099 * (1 + math.cos(math.pi * 14 / 15)) / 2)


def test_conventions_are_far_apart_under_the_tolerance() -> None:
    """The conventions the backends convert between give visibly different rates."""
    s = CASES["warmup_cosine"]
    tol = tolerance("schedule")
    # decay length counted from step 0 instead of after the warm-up (the Optax vs Keras difference)
    wrong = ScheduleSpec("warmup_cosine", 0.1, 15, floor=0.001, warmup_steps=5, warmup_start=0.01)
    assert max_scaled_error(judge_rates(wrong) / 0.1, judge_rates(s)[:15] / 0.1, tol) > 100
    # floor read as a fraction of the rate instead of an absolute value
    fraction = ScheduleSpec("cosine", 0.1, 20, floor=0.1 * 0.01)
    assert max_scaled_error(judge_rates(fraction) / 0.1, judge_rates(CASES["cosine"]) / 0.1, tol) > 100


def test_judge_refuses_steps_outside_the_schedule() -> None:
    with pytest.raises(SpecError, match=r"step: got 20"):
        ref.learning_rate(CASES["cosine"], 20)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "poly", "learning_rate": 0.1, "total_steps": 10}, "schedule"),
        ({"kind": "constant", "learning_rate": -0.1, "total_steps": 10}, "schedule.learning_rate"),
        ({"kind": "constant", "learning_rate": 0.1, "total_steps": 0}, "schedule.total_steps"),
        ({"kind": "step", "learning_rate": 0.1, "total_steps": 10, "gamma": 0.5}, "schedule.step_size"),
        ({"kind": "exponential", "learning_rate": 0.1, "total_steps": 10, "gamma": 1.5}, "schedule.gamma"),
        ({"kind": "cosine", "learning_rate": 0.1, "total_steps": 10, "floor": 0.2}, "schedule.floor"),
        ({"kind": "constant", "learning_rate": 0.1, "total_steps": 10, "floor": 0.0}, "schedule.floor"),
        (
            {
                "kind": "warmup_cosine",
                "learning_rate": 0.1,
                "total_steps": 10,
                "floor": 0.0,
                "warmup_steps": 10,
                "warmup_start": 0.01,
            },
            "schedule.warmup_steps",
        ),
        (
            {
                "kind": "warmup_cosine",
                "learning_rate": 0.1,
                "total_steps": 10,
                "floor": 0.0,
                "warmup_steps": 3,
                "warmup_start": 0.0,
            },
            "schedule.warmup_start",
        ),
    ],
)
def test_bad_schedule_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        ScheduleSpec(**kwargs)
    assert info.value.field == field
