"""Field checks shared by every spec: each failure is a :class:`SpecError` naming the field."""

from __future__ import annotations

import math
from collections.abc import Collection

from spec.errors import SpecError


def check_positive_int(field: str, value: object) -> None:
    """``value`` must be an int ≥ 1 (bools are refused: ``True`` is not a size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(field, value, "a positive integer")


def check_number(field: str, value: object, *, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """``value`` must be a finite real number in [low, high) — or (low, high) with ``low_open``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _within(value, low, high, low_open):
        bracket = "(" if low_open else "["
        upper = "∞)" if high == math.inf else f"{high:g})"
        raise SpecError(field, value, f"a finite number in {bracket}{low:g}, {upper}")


def _within(value: float, low: float, high: float, low_open: bool) -> bool:
    return math.isfinite(value) and (value > low if low_open else value >= low) and value < high


def mismatched_names(expected: Collection[str], given: Collection[str]) -> tuple[list[str], list[str]]:
    """The names ``expected`` lacks in ``given`` (missing) and those ``given`` has beyond it
    (unexpected), each in its collection's order."""
    return [n for n in expected if n not in given], [n for n in given if n not in expected]
