"""Dropout (train vs eval semantics, rate and inverted scaling) and the L2 term, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.data import digits
from spec.errors import SpecError
from spec.models import MLPSpec
from spec.params import init_params
from spec.tolerances import max_scaled_error, tolerance

RATE = 0.3
# One hidden layer read out through an identity kernel and zero bias, so the logits *are* the hidden
# units after dropout: each is either 0 or h / (1 − rate), with h the unit in evaluation mode.
PROBE = MLPSpec("dropout_probe", 64, (32,), 32, "relu", "linear", dropout=RATE)
X = digits((64,)).x_train[:256]


def probe(backend: Backend, seed: int = 0) -> tuple[object, dict[str, np.ndarray]]:
    params = init_params(PROBE, 0)
    params["dense_1/kernel"] = np.eye(32, dtype=np.float32)
    params["dense_1/bias"] = np.zeros(32, np.float32)
    return backend.build(PROBE, params, seed=seed), params


def test_dropout_is_the_identity_in_evaluation(backend: Backend) -> None:
    model, params = probe(backend)
    tol = tolerance("forward", "float32", backend.device())
    assert max_scaled_error(backend.logits(model, X), ref.logits(PROBE, params, X), tol) <= 1.0
    np.testing.assert_array_equal(backend.logits(model, X), backend.logits(model, X))


def test_dropout_zeroes_at_its_rate_and_scales_the_survivors(backend: Backend) -> None:
    model, params = probe(backend)
    hidden = ref.logits(PROBE, params, X)
    active = hidden > 1e-3  # units that dropout can visibly zero
    trained = backend.logits(model, X, training=True)
    dropped = trained[active] == 0
    # ~5,000 Bernoulli draws: the zeroed fraction lies within rate ± 4.5σ
    sigma = np.sqrt(RATE * (1 - RATE) / active.sum())
    assert abs(dropped.mean() - RATE) < 4.5 * sigma, dropped.mean()
    # inverted dropout: the survivors are scaled by 1 / (1 − rate), so the mean is preserved
    survivors = ~dropped
    tol = tolerance("forward", "float32", backend.device())
    assert max_scaled_error(trained[active][survivors], hidden[active][survivors] / (1 - RATE), tol) <= 1.0
    assert np.abs(trained[~active]).max() <= 1e-3 / (1 - RATE) + tol.atol


def test_each_training_call_draws_a_new_mask_reproducibly_from_the_seed(backend: Backend) -> None:
    model, _ = probe(backend, seed=5)
    first, second = backend.logits(model, X, training=True), backend.logits(model, X, training=True)
    assert not np.array_equal(first, second)
    again, _ = probe(backend, seed=5)
    np.testing.assert_array_equal(backend.logits(again, X, training=True), first)
    other, _ = probe(backend, seed=6)
    assert not np.array_equal(backend.logits(other, X, training=True), first)


def test_the_training_loss_sees_dropout_and_the_evaluation_loss_does_not(backend: Backend) -> None:
    model, params = probe(backend)
    targets = np.zeros((len(X), 32), np.float32)
    losses = {backend.loss_and_grads(model, X, targets, "mse")[0] for _ in range(3)}
    assert len(losses) == 3  # a new mask each time
    without = MLPSpec("no_dropout", 64, (32,), 32, "relu", "linear")
    value, _ = backend.loss_and_grads(backend.build(without, params), X, targets, "mse")
    assert value == pytest.approx(ref.loss(without, params, X, targets, "mse"), rel=tolerance("forward").rtol)


def test_the_l2_term_is_on_the_kernels_only() -> None:
    spec = MLPSpec("l2", 3, (2,), 1, "relu", "linear", kernel_l2=0.5)
    params = {
        "dense_0/kernel": np.full((3, 2), 2.0, np.float32),
        "dense_0/bias": np.full(2, 100.0, np.float32),
        "dense_1/kernel": np.full((2, 1), 1.0, np.float32),
        "dense_1/bias": np.full(1, 100.0, np.float32),
    }
    assert ref.l2_penalty(spec, params) == 0.5 * (6 * 4.0 + 2 * 1.0)


@pytest.mark.parametrize(("field", "value"), [("dropout", 1.0), ("dropout", -0.1), ("kernel_l2", -1e-4)])
def test_bad_regularisation_names_the_field(field: str, value: float) -> None:
    with pytest.raises(SpecError) as info:
        MLPSpec("bad", 64, (8,), 10, "relu", "softmax", **{field: value})
    assert info.value.field == field
