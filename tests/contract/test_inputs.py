"""Every method that takes a batch refuses one that does not fit the spec — one feature too many, or
the wrong kind of values — naming the model, what it takes and what came, before any framework would
broadcast, reshape or cast it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.cases import Case
from spec.errors import BatchError
from spec.optimizers import OptimizerSpec
from tests.checks import built
from tests.contract.matrix import cases


def misfits(case: Case) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Batches ``case`` must refuse, with what the error must say."""
    shape = case.spec.input_shape
    wider = (*shape[:-1], shape[-1] + 1)
    expected = f"(batch, {', '.join(map(str, shape))})"
    if case.spec.input_dtype == "int32":
        return {
            "one step too many": (np.zeros((2, *wider), np.int32), [str((2, *wider)), expected]),
            "float token ids": (np.zeros((2, *shape), np.float32), ["dtype float32", "integer token ids"]),
        }
    return {
        "one feature too many": (np.zeros((2, *wider), np.float32), [str((2, *wider)), expected]),
        "integer values": (np.zeros((2, *shape), np.uint8), ["dtype uint8", "float values"]),
    }


def assert_refused(
    call: Callable[[np.ndarray], object], batch: np.ndarray, name: str, fragments: list[str], what: str
) -> None:
    with pytest.raises(BatchError) as info:
        call(batch)
    message = str(info.value)
    assert message.startswith(f"{name}: "), f"{what}: {message}"
    assert all(fragment in message for fragment in fragments), f"{what}: {message}"


@pytest.mark.parametrize("case", cases("inputs"))
def test_every_method_that_takes_a_batch_refuses_a_misfit(backend: Backend, case: Case) -> None:
    spec = case.spec
    model = built(backend, spec, case.params(0))
    _, targets = case.batch(0, size=2)
    optimizer = backend.make_optimizer(model, OptimizerSpec("sgd", 0.1))
    loss = case.trains_with
    calls = {
        "judge": lambda batch: ref.forward(spec, case.params(0), batch),
        "forward": lambda batch: backend.forward(model, batch),
        "training logits": lambda batch: backend.logits(model, batch, training=True),
        "compiled logits": lambda batch: backend.logits(model, batch, compiled=True),
        "loss_and_grads": lambda batch: backend.loss_and_grads(model, batch, targets, loss),
        "train_step": lambda batch: backend.train_step(model, optimizer, batch, targets, loss),
        "eager train_step": lambda batch: backend.train_step(model, optimizer, batch, targets, loss, compiled=False),
    }
    for problem, (batch, fragments) in misfits(case).items():
        for method, call in calls.items():
            assert_refused(call, batch, spec.name, fragments, f"{problem}, {method}")
