"""The framework's own parameter count (trainable and not) equals the spec's, for every case."""

from __future__ import annotations

import pytest

from spec.backend import Backend
from spec.cases import Case
from spec.params import count_params
from tests.checks import built
from tests.contract.matrix import cases


@pytest.mark.parametrize("case", cases("counts"))
def test_param_counts_from_the_framework_equal_the_spec(backend: Backend, case: Case) -> None:
    model = built(backend, case.spec, case.params(0))
    assert backend.count_params(model) == count_params(case.spec)
