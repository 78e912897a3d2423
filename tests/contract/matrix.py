"""The cases a check judges, as pytest parameters in the tier :meth:`spec.cases.Case.tier` gives."""

from __future__ import annotations

import pytest

from spec.cases import CASES, Check


def cases(check: Check) -> list:
    """``pytest.param`` per case that ``check`` judges, marked ``exhaustive`` where it runs in that tier."""
    params = []
    for case in CASES:
        tier = case.tier(check)
        if tier is not None:
            marks = [pytest.mark.exhaustive] if tier == "exhaustive" else []
            params.append(pytest.param(case, id=case.id, marks=marks))
    return params
