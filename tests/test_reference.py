"""The judge checked against values worked out by hand, and its losses against their definitions."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from spec import reference as ref
from spec.cases import SMALL
from spec.errors import BatchError, SpecError
from spec.layers import Activation
from spec.losses import check_loss
from spec.models import MLPSpec
from spec.tolerances import RELATIVE_TO_MAGNITUDE, max_scaled_error

# A 2-2-1 network small enough to evaluate on paper:
#   h = relu(x @ W0 + b0), z = h @ W1 + b1, y = sigmoid(z)
TINY = MLPSpec("tiny", 2, (2,), 1, ("relu",), "sigmoid")
TINY_PARAMS = {
    "dense_0/kernel": np.array([[1.0, -1.0], [2.0, 0.5]]),
    "dense_0/bias": np.array([0.5, -0.25]),
    "dense_1/kernel": np.array([[1.5], [-2.0]]),
    "dense_1/bias": np.array([0.25]),
}


def test_tiny_network_by_hand() -> None:
    x = np.array([[1.0, 1.0], [-1.0, 0.5]])
    # row 0: pre = [1 + 2 + 0.5, -1 + 0.5 - 0.25] = [3.5, -0.75] -> h = [3.5, 0]
    #        z = 3.5·1.5 + 0 + 0.25 = 5.5
    # row 1: pre = [-1 + 1 + 0.5, 1 + 0.25 - 0.25] = [0.5, 1.0] -> h = [0.5, 1.0]
    #        z = 0.75 - 2 + 0.25 = -1.0
    np.testing.assert_allclose(ref.logits(TINY, TINY_PARAMS, x), [[5.5], [-1.0]], rtol=0, atol=1e-15)
    expected = [[1 / (1 + math.exp(-5.5))], [1 / (1 + math.exp(1.0))]]
    np.testing.assert_allclose(ref.forward(TINY, TINY_PARAMS, x), expected, rtol=1e-15)
    # BCE from logits with targets [1, 0]: mean(log(1 + e^-5.5), log(1 + e^-1))
    bce = ref.loss(TINY, TINY_PARAMS, x, np.array([[1.0], [0.0]]), "binary_crossentropy")
    assert bce == pytest.approx((math.log1p(math.exp(-5.5)) + math.log1p(math.exp(-1.0))) / 2, rel=1e-14)


def test_output_magnitude_by_hand() -> None:
    # the terms of z: row 0 3.5·1.5 + 0·(−2) + 0.25 = 5.5; row 1 0.5·1.5 + 1.0·(−2) + 0.25 = −1.0,
    # whose absolute values sum to 0.75 + 2 + 0.25 = 3.0
    x = np.array([[1.0, 1.0], [-1.0, 0.5]])
    np.testing.assert_allclose(ref.output_magnitude(TINY, TINY_PARAMS, x), [[5.5], [3.0]], rtol=1e-15)


def test_a_direction_below_the_judge_s_resolution_is_unresolved_not_passed() -> None:
    """A central difference is uncertain by a few ulps of the loss over 2h: where that exceeds
    FD_RESOLUTION of the derivative, the direction cannot judge a float32 gradient and says so; the
    error itself is never discounted."""
    tiny = ref.DirectionalCheck("w", judge=3.5977e-6, backend=3.5972e-6, typical=7.5e-6, noise=2.2e-9)
    assert not tiny.resolved and tiny.relative_error == pytest.approx(5e-10 / 3.5977e-6)
    large = ref.DirectionalCheck("w", judge=3.6e-2, backend=3.5e-2, typical=7.5e-2, noise=2.2e-9)
    assert large.resolved and large.relative_error == pytest.approx(1e-3 / 3.6e-2)
    x, targets = np.ones((1, 2)), np.zeros((1, 1))
    value = ref.loss(TINY, TINY_PARAMS, x, targets, "mse")
    (first, *_) = ref.judge_directions(TINY, TINY_PARAMS, x, targets, "mse")
    assert first.noise == ref.FD_NOISE_ULPS * np.spacing(value) / (2 * ref.fd_step(value))


def test_an_output_of_zero_magnitude_allows_no_error() -> None:
    """A blank example through zero biases: its exact output and its magnitude are 0, so an equal
    output is within any tolerance and any other is infinitely far, with no 0/0 in between."""
    tol = RELATIVE_TO_MAGNITUDE
    magnitude, expected = np.array([[0.0, 0.0], [2.0, 2.0]]), np.array([[0.0, 0.0], [1.0, -1.0]])
    assert max_scaled_error(np.array([[0.0, 0.0], [1.0, -1.0]]), expected, tol, magnitude) == 0.0
    assert max_scaled_error(np.array([[0.0, 0.0], [1.5, -1.0]]), expected, tol, magnitude) == 0.25
    assert max_scaled_error(np.array([[1e-30, 0.0], [1.0, -1.0]]), expected, tol, magnitude) == math.inf


@pytest.mark.parametrize("name", sorted(SMALL))
def test_output_magnitude_bounds_every_output(name: str) -> None:
    from spec.params import init_params

    spec = SMALL[name]
    params = init_params(spec, 0)
    x, _ = spec.example_batch(3, 0)
    for training in (False, True):
        logits = ref.logits(spec, params, x, training=training)
        magnitude = ref.output_magnitude(spec, params, x, training=training)
        assert magnitude.shape == logits.shape
        assert np.all(magnitude >= np.abs(logits) * (1 - 1e-12))  # |Σ terms| ≤ Σ |terms|
        assert np.any(magnitude > np.abs(logits) * 1.01)  # initial weights of both signs: some terms cancel


@pytest.mark.parametrize(
    ("act", "x", "expected"),
    [
        ("relu", [-2.0, 0.0, 3.0], [0.0, 0.0, 3.0]),
        ("leaky_relu(0.2)", [-2.0, 0.0, 3.0], [-0.4, 0.0, 3.0]),
        ("elu(1.0)", [-1.0, 0.0, 2.0], [math.exp(-1) - 1, 0.0, 2.0]),
        ("elu(0.5)", [-2.0], [0.5 * (math.exp(-2) - 1)]),
        ("tanh", [0.5], [math.tanh(0.5)]),
        ("sigmoid", [0.0, -800.0, 800.0], [0.5, 0.0, 1.0]),
        # exact GELU: x·Φ(x); Φ(1) = 0.841344746068543 (standard normal table)
        ("gelu(exact)", [1.0, -1.0], [0.841344746068543, -1 + 0.841344746068543]),
        # tanh approximation (Hendrycks & Gimpel 2016) at x = 1
        ("gelu(tanh)", [1.0], [0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715))]),
        ("linear", [-3.0], [-3.0]),
    ],
)
def test_activations_by_hand(act: str, x: list[float], expected: list[float]) -> None:
    np.testing.assert_allclose(ref.activation(np.array(x), Activation.parse(act)), expected, rtol=1e-14, atol=1e-15)


def test_cross_entropy_by_hand() -> None:
    z = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # softmax rows: [1/2, 1/2], [3/4, 1/4]
    labels = np.array([0, 1])
    expected = (math.log(2) + math.log(4)) / 2
    assert ref.loss_from_logits("sparse_categorical_crossentropy", z, labels, "softmax") == pytest.approx(expected)
    one_hot = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert ref.loss_from_logits("categorical_crossentropy", z, one_hot, "softmax") == pytest.approx(expected)
    # soft targets: -(0.5 log 3/4 + 0.5 log 1/4) for row 1, log 2 for row 0
    soft = np.array([[1.0, 0.0], [0.5, 0.5]])
    soft_expected = (math.log(2) - 0.5 * (math.log(0.75) + math.log(0.25))) / 2
    assert ref.loss_from_logits("categorical_crossentropy", z, soft, "softmax") == pytest.approx(soft_expected)


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    z = np.array([[1000.0, 0.0]])
    assert ref.loss_from_logits("sparse_categorical_crossentropy", z, np.array([1]), "softmax") == pytest.approx(1000.0)


def test_mse_uses_the_activated_output() -> None:
    z = np.array([[0.0, 0.0]])  # sigmoid -> 0.5
    assert ref.loss_from_logits("mse", z, np.array([[1.0, 0.0]]), "sigmoid") == pytest.approx(0.25)
    assert ref.loss_from_logits("mse", np.array([[1.0, 3.0]]), np.array([[0.0, 0.0]]), "linear") == pytest.approx(5.0)


def test_loss_must_fit_the_output_activation() -> None:
    with pytest.raises(SpecError, match=r"loss: got 'binary_crossentropy'.*'softmax' output"):
        check_loss("binary_crossentropy", "softmax")
    with pytest.raises(SpecError, match="loss: got 'hinge'"):
        check_loss("hinge", "softmax")


def test_bad_targets_are_named() -> None:
    z = np.zeros((2, 3))
    with pytest.raises(SpecError, match="targets"):
        ref.loss_from_logits("sparse_categorical_crossentropy", z, np.array([0.0, 1.0]), "softmax")
    with pytest.raises(SpecError, match=r"targets.*shape \(2, 3\)"):
        ref.loss_from_logits("categorical_crossentropy", z, np.zeros((2, 2)), "softmax")


def test_bad_input_shape_is_named() -> None:
    expected = f"{TINY.name}: x has shape (3, 5); expected (batch, {TINY.input_size}) with batch ≥ 1"
    with pytest.raises(BatchError, match=re.escape(expected)) as info:
        ref.logits(TINY, TINY_PARAMS, np.zeros((3, 5)))
    assert isinstance(info.value, SpecError) and info.value.field == "x"


def test_finite_differences_match_an_analytic_gradient() -> None:
    # For a linear model with MSE, dL/dW = 2/(N·C) · xᵀ(xW + b − t): checks the judge's own gradient tool.
    spec = MLPSpec("lin", 3, (), 2, (), "linear")
    rng = np.random.default_rng(0)
    params = {"dense_0/kernel": rng.normal(size=(3, 2)), "dense_0/bias": rng.normal(size=2)}
    x, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    residual = x @ params["dense_0/kernel"] + params["dense_0/bias"] - t
    grads = {"dense_0/kernel": 2 / 10 * x.T @ residual, "dense_0/bias": 2 / 10 * residual.sum(0)}
    checks = ref.check_gradients(spec, params, x, t, "mse", grads)
    assert len(checks) == 2 * 2 + 2
    assert max(c.relative_error for c in checks) < 1e-8
    # and it notices a wrong gradient
    wrong = {**grads, "dense_0/bias": grads["dense_0/bias"] * 1.01}
    assert max(c.relative_error for c in ref.check_gradients(spec, params, x, t, "mse", wrong)) > 1e-3


def test_pooling_padding_semantics_by_hand() -> None:
    from spec.layers import Pool2D

    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    left_out = ref.pool2d(x, Pool2D("avg", 3, 1, "same", count_padding=False))
    counted = ref.pool2d(x, Pool2D("avg", 3, 1, "same", count_padding=True))
    assert left_out[0, 0, 0, 0] == pytest.approx(2.5)  # the 4 real pixels
    assert counted[0, 0, 0, 0] == pytest.approx(10 / 9)  # 4 real pixels and 5 padded zeros
    negative = ref.pool2d(-x, Pool2D("max", 3, 1, "same"))
    assert negative[0, 1, 1, 0] == -1.0  # padding never wins a max, even over negative values


def test_convolution_by_hand() -> None:
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    kernel = np.zeros((2, 2, 1, 1))
    kernel[0, 1, 0, 0] = 1.0  # picks the top-right pixel of each window: a cross-correlation
    out = ref.conv2d(x, kernel, (1, 1), ((0, 0), (0, 0)))
    np.testing.assert_array_equal(out[0, :, :, 0], [[1.0, 2.0], [4.0, 5.0]])
    strided = ref.conv2d(x, kernel, (2, 2), ((0, 1), (0, 1)))  # TF's 'same' at stride 2 on 3 pixels
    np.testing.assert_array_equal(strided[0, :, :, 0], [[1.0, 0.0], [7.0, 0.0]])


def test_kinks_are_measured_from_each_piecewise_op_in_units_of_its_inputs_rms() -> None:
    from spec.layers import Pool2D

    x = np.array([3.0, -4.0, 1e-3, 0.0])  # rms √(25.000001 / 4); 0 lies on the kink itself
    with ref.recording_kinks() as found:
        ref.relu(x[:3])
        ref.activation(x[:3], Activation.parse("leaky_relu(0.2)"))
        ref.activation(x, Activation.parse("elu(1.0)"))  # C¹ at 0: no kink
        ref.activation(x, Activation.parse("tanh"))
    rms = math.sqrt((9 + 16 + 1e-6) / 3)
    assert [k.op for k in found] == ["relu #1", "leaky_relu #2"]
    assert [k.margin for k in found] == pytest.approx([1e-3 / rms, 1e-3 / rms], rel=1e-12)
    # max pooling: the gap from each window's maximum to the runner-up below it; equal values (a
    # ReLU's zeros, or the same value twice) tie in every precision and are left out
    windows = np.array([[5.0, 4.5, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 1.0]]).reshape(3, 2, 2)
    x = windows.transpose(1, 0, 2).reshape(1, 2, 6, 1)  # three 2×2 windows side by side
    with ref.recording_kinks() as found:
        pooled = ref.pool2d(x, Pool2D("max", 2, 2))
    np.testing.assert_array_equal(pooled.ravel(), [5.0, 0.0, 2.0])
    assert found[0].op == "max_pool #1"
    assert found[0].margin == pytest.approx(0.5 / math.sqrt(np.mean(x**2)), rel=1e-12)  # 5 − 4.5; 2 − 1 is wider
    assert ref._recorded.get() is None  # nothing is recorded outside recording_kinks


def test_the_closest_kink_of_a_loss_pass_is_its_smallest_margin() -> None:
    # TINY's hidden pre-activations: row 0 [3.5, −0.75], row 1 [0.5, 1.0] -> closest 0.5
    x = np.array([[1.0, 1.0], [-1.0, 0.5]])
    kink = ref.closest_kink(TINY, TINY_PARAMS, x, np.array([[1.0], [0.0]]), "binary_crossentropy")
    assert kink == ref.Kink("relu #1", pytest.approx(0.5 / math.sqrt((3.5**2 + 0.75**2 + 0.25 + 1) / 4)))
    smooth = MLPSpec("smooth", 2, (2,), 1, ("tanh",), "sigmoid")
    assert ref.closest_kink(smooth, TINY_PARAMS, x, np.array([[1.0], [0.0]]), "binary_crossentropy") is None
