"""Every backend against the float64 judge, and against each other, for every zoo model and a set of
small specs that exercise each activation, output activation and loss."""

from __future__ import annotations

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.data import digits, one_hot
from spec.errors import ParamError
from spec.layers import Act, BatchNorm, Conv2D, Dense, Flatten
from spec.losses import LOSS_OUTPUT_ACTIVATIONS
from spec.models import ZOO, CNNSpec, MLPSpec, ModelSpec
from spec.optimizers import OptimizerSpec
from spec.params import count_params, init_params, param_specs, trainable_names
from spec.tolerances import max_scaled_error, tolerance

BATCH = 32

# Small specs covering what the zoo does not: every activation, every output activation with every
# loss it allows, no bias, and each initializer's scale.
VARIANTS: list[tuple[MLPSpec, str]] = [
    (
        MLPSpec("act_tanh", 64, (16,), 10, "tanh", "softmax", kernel_initializer="glorot_normal"),
        "categorical_crossentropy",
    ),
    (
        MLPSpec("act_sigmoid", 64, (16,), 10, "sigmoid", "softmax", kernel_initializer="he_uniform"),
        "sparse_categorical_crossentropy",
    ),
    (
        MLPSpec("act_leaky", 64, (16, 12), 10, "leaky_relu(0.2)", "softmax", bias_initializer="torch_default"),
        "sparse_categorical_crossentropy",
    ),
    (
        MLPSpec("act_gelu_tanh", 64, (16,), 10, "gelu(tanh)", "sigmoid", kernel_initializer="lecun_normal"),
        "binary_crossentropy",
    ),
    (MLPSpec("act_elu", 64, (16,), 10, "elu(0.5)", "sigmoid", kernel_initializer="torch_default"), "mse"),
    (MLPSpec("act_linear_nobias", 64, (16,), 10, "linear", "linear", use_bias=False), "mse"),
    (MLPSpec("act_gelu_exact", 64, (16,), 10, "gelu(exact)", "softmax", bias_initializer="torch_default"), "mse"),
    # the L2 term in the loss, large enough to be a tenth of it
    (MLPSpec("kernel_l2", 64, (16,), 10, "relu", "softmax", kernel_l2=0.01), "sparse_categorical_crossentropy"),
]
MLP_ZOO = {name: spec for name, spec in ZOO.items() if isinstance(spec, MLPSpec)}  # vision: test_vision.py
CASES = [pytest.param(spec, spec.default_loss, id=name) for name, spec in MLP_ZOO.items()] + [
    pytest.param(spec, loss, id=spec.name) for spec, loss in VARIANTS
]


def test_variants_cover_every_loss_with_every_output_activation() -> None:
    covered = {(spec.output_activation, loss) for spec, loss in VARIANTS}
    needed = {(act, loss) for loss, acts in LOSS_OUTPUT_ACTIVATIONS.items() for act in acts}
    assert needed <= covered | {("softmax", "sparse_categorical_crossentropy")}


def batch_for(spec: ModelSpec, loss: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A batch of real digits for ``spec`` and targets of the form ``loss`` expects (the digits
    themselves for an autoencoder)."""
    split = digits(spec.input_shape)
    x, labels = split.x_test[:BATCH], split.y_test[:BATCH]
    if loss == "sparse_categorical_crossentropy":
        return x, labels
    if spec.reconstructs_input and spec.output_activation == "sigmoid":
        return x, x
    if loss in ("categorical_crossentropy", "binary_crossentropy") or spec.output_activation != "linear":
        return x, one_hot(labels, spec.output_size)
    return x, np.random.default_rng(seed).normal(size=(BATCH, spec.output_size)).astype(np.float32)


@pytest.mark.parametrize(("spec", "loss"), CASES)
def test_param_count_from_the_framework_equals_the_spec(backend: Backend, spec: ModelSpec, loss: str) -> None:
    model = backend.build(spec, init_params(spec, 0))
    assert backend.count_params(model) == count_params(spec)


@pytest.mark.parametrize(("spec", "loss"), CASES)
def test_forward_matches_the_judge(backend: Backend, spec: ModelSpec, loss: str) -> None:
    params = init_params(spec, 1)
    x, _ = batch_for(spec, loss)
    model = backend.build(spec, params)
    tol = tolerance("forward", "float32", backend.device())
    logits = backend.logits(model, x)
    outputs = backend.forward(model, x)
    assert logits.dtype == np.float32 and outputs.dtype == np.float32
    assert max_scaled_error(logits, ref.logits(spec, params, x), tol) <= 1.0
    assert max_scaled_error(outputs, ref.forward(spec, params, x), tol) <= 1.0


@pytest.mark.parametrize(("spec", "loss"), CASES)
def test_loss_and_gradients_match_the_judge(backend: Backend, spec: ModelSpec, loss: str) -> None:
    params = init_params(spec, 2)
    x, targets = batch_for(spec, loss)
    model = backend.build(spec, params)
    value, grads = backend.loss_and_grads(model, x, targets, loss)
    assert value == pytest.approx(ref.loss(spec, params, x, targets, loss), rel=tolerance("forward").rtol)
    assert list(grads) == list(params)
    assert all(grads[n].shape == params[n].shape for n in params)
    checks = ref.check_gradients(spec, params, x, targets, loss, grads, seed=3)
    tol = tolerance("gradient", "float32", backend.device())
    worst = max(checks, key=lambda c: c.relative_error)
    assert worst.relative_error <= tol.rtol, worst


@pytest.mark.parametrize(("spec", "loss"), CASES)
def test_backends_agree_per_parameter(backends: tuple[Backend, Backend], spec: ModelSpec, loss: str) -> None:
    params = init_params(spec, 4)
    x, targets = batch_for(spec, loss)
    first, second = backends
    results = [b.loss_and_grads(b.build(spec, params), x, targets, loss) for b in backends]
    outputs = [b.forward(b.build(spec, params), x) for b in backends]
    device = first.device()
    assert max_scaled_error(outputs[0], outputs[1], tolerance("cross_backend_forward", "float32", device)) <= 1.0
    tol = tolerance("cross_backend_gradient", "float32", device)
    for name in params:
        a, b = results[0][1][name], results[1][1][name]
        error = max_scaled_error(a, b, tol)
        assert error <= 1.0, f"{name}: {first.name} vs {second.name} differ by {error:.3g}× the tolerance"


ROUND_TRIP = [*MLP_ZOO, "digits_cnn", "cifar_simple_cnn", "resnet18_narrow"]  # conv, flatten and BatchNorm layouts


@pytest.mark.parametrize("spec", [ZOO[name] for name in ROUND_TRIP], ids=ROUND_TRIP)
def test_export_import_round_trip(backend: Backend, spec: ModelSpec) -> None:
    params = init_params(spec, 5)
    model = backend.build(spec, params)
    exported = backend.export_params(model)
    assert list(exported) == list(params)
    for name in params:
        assert exported[name].dtype == np.float32
        np.testing.assert_array_equal(exported[name], params[name], err_msg=name)
    x, _ = batch_for(spec, "sparse_categorical_crossentropy")
    before = backend.forward(model, x)
    other = backend.build(spec, init_params(spec, 6))
    backend.load_params(other, exported)
    np.testing.assert_array_equal(backend.forward(other, x), before)
    # an export is a snapshot: changing the model afterwards leaves it alone
    backend.load_params(model, init_params(spec, 7))
    for name in params:
        np.testing.assert_array_equal(exported[name], params[name], err_msg=f"{name} changed with the model")


def test_loading_a_wrong_shape_names_the_parameter(backend: Backend) -> None:
    spec = ZOO["digits_mlp"]
    model = backend.build(spec, init_params(spec, 0))
    bad = init_params(spec, 0)
    bad["dense_1/bias"] = np.zeros(33, np.float32)
    with pytest.raises(ParamError, match=r"'dense_1/bias' has shape \(33,\)"):
        backend.load_params(model, bad)


def test_loss_that_does_not_fit_the_output_is_refused(backend: Backend) -> None:
    from spec.errors import SpecError

    spec = ZOO["digits_mlp"]
    model = backend.build(spec, init_params(spec, 0))
    with pytest.raises(SpecError, match="loss"):
        backend.loss_and_grads(
            model, np.zeros((2, 64), np.float32), np.zeros((2, 10), np.float32), "binary_crossentropy"
        )


def test_device_is_reported(backend: Backend) -> None:
    device = backend.device()
    assert device == "cpu" or ":" in device
    assert backend.framework_version().startswith(backend.name)


def test_evaluation_sees_every_change_to_the_model(backend: Backend) -> None:
    """A backend may keep state between compiled evaluation passes (JAX keeps its split of the
    model): every change made through the contract — loaded weights, a training pass's BatchNorm
    statistics, compiled and eager train steps, applied gradients — shows in the next evaluation,
    which stays the judge's on the model's exported weights."""
    spec = CNNSpec(
        "bn_probe", (8, 8, 1), (Conv2D(4, 3, use_bias=False), BatchNorm(), Act("relu"), Flatten(), Dense(10)), "softmax"
    )
    split = digits(spec.input_shape)
    x, labels = split.x_test[:16], split.y_test[:16]
    loss = "sparse_categorical_crossentropy"
    model = backend.build(spec, init_params(spec, 0))
    optimizer = backend.make_optimizer(model, OptimizerSpec("sgd", 0.1, momentum=0.0, nesterov=False))
    tol = tolerance("forward", "float32", backend.device())
    seen = [backend.forward(model, x)]

    def assert_evaluation_follows(change: str) -> None:
        outputs = backend.forward(model, x)  # before anything else reads the model
        assert not np.array_equal(outputs, seen[-1]), f"{change}: evaluation unchanged"
        expected = ref.forward(spec, backend.export_params(model), x)
        assert max_scaled_error(outputs, expected, tol) <= 1.0, change
        seen.append(backend.forward(model, x))  # an evaluation again before the next change

    backend.load_params(model, init_params(spec, 1))
    assert_evaluation_follows("load_params")
    backend.loss_and_grads(model, x, labels, loss)  # a training pass: BatchNorm's running statistics
    assert_evaluation_follows("loss_and_grads")
    backend.train_step(model, optimizer, x, labels, loss, compiled=True)
    assert_evaluation_follows("compiled train_step")
    backend.train_step(model, optimizer, x, labels, loss, compiled=False)
    assert_evaluation_follows("eager train_step")
    grads = {name: np.full(param_specs(spec)[name].shape, 0.1, np.float32) for name in trainable_names(spec)}
    backend.apply_gradients(model, optimizer, grads)
    assert_evaluation_follows("apply_gradients")
