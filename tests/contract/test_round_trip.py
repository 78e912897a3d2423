"""Export → import: the export holds what was loaded, bit for bit; loading it into another model
gives the same outputs; and an export is a snapshot, which later changes to the model leave alone."""

from __future__ import annotations

import numpy as np
import pytest

from spec.backend import Backend
from spec.cases import Case
from tests.checks import built
from tests.contract.matrix import cases

SEED = 6


@pytest.mark.parametrize("case", cases("round_trip"))
def test_export_import_round_trip(backend: Backend, case: Case) -> None:
    params = case.params(SEED)
    model = built(backend, case.spec, params)
    exported = backend.export_params(model)
    assert list(exported) == list(params)
    for name in params:
        assert exported[name].dtype == np.float32, name
        np.testing.assert_array_equal(exported[name], params[name], err_msg=name)
    x, _ = case.batch(SEED)
    before = backend.forward(model, x)
    other = backend.build(case.spec, case.params(SEED + 1))
    backend.load_params(other, exported)
    np.testing.assert_array_equal(backend.forward(other, x), before)
    backend.load_params(model, case.params(SEED + 2))
    for name in params:
        np.testing.assert_array_equal(exported[name], params[name], err_msg=f"{name} changed with the model")
