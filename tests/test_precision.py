"""Models built in float64 or mixed precision (:meth:`spec.backend.Backend.build`'s ``precision``):
what they take and give, their optimizer steps and training, and what float64 shows about float32
gradients of deep networks (:data:`spec.cases.DEEP_GRADIENTS`). Their agreement with the judge is
the contract's ``witness`` and ``mixed`` checks (tests/contract/test_witness.py, test_mixed.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend, engine_of
from spec.cases import ZOO_CASES
from spec.errors import SpecError
from spec.optimizers import OPTIMIZER_ZOO, OptimizerSpec
from spec.params import MIXED_PRECISIONS, Precision
from spec.precision import (
    UNIT_ROUNDOFF,
    cpu_flags,
    cpu_info,
    per_tensor_errors,
    per_tensor_norm_errors,
    rounding_depth,
    witness_check,
)
from spec.tolerances import mixed_tolerance, tolerance
from tests.checks import built

SGD = OptimizerSpec("sgd", 0.1, momentum=0.9, nesterov=False)


def _torch_float32_settings() -> dict[str, object]:
    import torch

    return {
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def _keras_float32_settings() -> dict[str, object]:
    import tensorflow as tf

    return {"tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled()}


def _jax_float32_settings() -> dict[str, object]:
    import jax

    return {"jax_default_matmul_precision": jax.config.jax_default_matmul_precision}


# Each framework's switches away from TF32 (and TPU bfloat16 passes) in float32 matmuls and
# convolutions, as each backend sets them when it loads (docs/precision.md: the defaults, with sources,
# are TF32 for torch's cuDNN convolutions, for TensorFlow, and for JAX on a GPU).
FLOAT32_EXACT = {  # by engine (spec.backend.engine_of): Keras on torch or JAX sets torch's or JAX's
    "torch": (
        _torch_float32_settings,
        {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False, "float32_matmul_precision": "highest"},
    ),
    "tensorflow": (_keras_float32_settings, {"tensor_float_32_execution": False}),
    "jax": (_jax_float32_settings, {"jax_default_matmul_precision": "highest"}),
}


def test_each_backend_keeps_float32_exact(backend: Backend) -> None:
    read, expected = FLOAT32_EXACT[engine_of(backend.name)]
    assert read() == expected


def test_a_precision_the_spec_does_not_name_is_refused(backend: Backend) -> None:
    case = ZOO_CASES["digits_mlp"]
    with pytest.raises(SpecError, match="precision"):
        backend.build(case.spec, case.params(0), precision="float16")  # type: ignore[arg-type]  # mixed_float16 is


@pytest.mark.parametrize("precision", MIXED_PRECISIONS)
def test_a_mixed_precision_model_holds_takes_and_returns_float32(backend: Backend, precision: Precision) -> None:
    """Mixed precision keeps the variables, and so exports and gradients, in float32; its outputs
    come back as float32 too (numpy has no bfloat16) — rounded to the format on the way."""
    case = ZOO_CASES["digits_mlp"]
    params, (x, targets) = case.params(0), case.batch(0)
    model = built(backend, case.spec, params, precision=precision)
    exported = backend.export_params(model)
    assert all(exported[name].dtype == np.float32 and np.array_equal(exported[name], params[name]) for name in params)
    logits = backend.logits(model, x)
    assert logits.dtype == np.float32
    # computed in the low format: as far from float32 as its rounding, not closer
    error = np.abs(logits - ref.logits(case.spec, params, x)).max() / np.abs(logits).max()
    assert UNIT_ROUNDOFF[precision] / 16 < error, error
    _, grads = backend.loss_and_grads(model, x, targets, case.trains_with)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}


@pytest.mark.exhaustive  # three builds compiled per backend; make test checks float16's loss scaling below
@pytest.mark.parametrize("precision", MIXED_PRECISIONS)
def test_mixed_precision_training_follows_float64(backend: Backend, precision: Precision) -> None:
    """20 compiled Adam steps of digits_mlp in mixed precision (float16 with the framework's loss
    scaling) against the same steps of the backend's float64 build: every step's loss within u per
    product of the float64 one (measured ≤ 0.6u), and how far the parameters moved off float64's path
    within what each step's gradients carry (mixed_gradient; measured 3.5%–4.0% in bfloat16,
    1.2%–1.3% in float16, on all three)."""
    case = ZOO_CASES["digits_mlp"]
    params, adam, depth = case.params(0), OPTIMIZER_ZOO["adam_torch_default"], rounding_depth(case.spec)
    runs = {}
    for run in ("float64", precision):
        model = built(backend, case.spec, params, precision=run)
        optimizer = backend.make_optimizer(model, adam)
        losses = [
            backend.train_step(model, optimizer, *case.batch(step), case.trains_with, compiled=True)
            for step in range(20)
        ]
        runs[run] = np.array(losses), backend.export_params(model)
    (losses, final), (exact_losses, exact_final) = runs[precision], runs["float64"]
    assert np.abs(losses - exact_losses).max() / np.abs(exact_losses).min() <= UNIT_ROUNDOFF[precision] * depth
    moved = {name: exact_final[name] - params[name] for name in params}
    off_path = per_tensor_norm_errors(case.spec, {n: final[n] - params[n] for n in params}, moved)
    bound = mixed_tolerance("mixed_gradient", precision, depth, backend.device()).rtol
    assert max(off_path.values()) <= bound, off_path


def test_float16_loss_scaling_skips_a_step_whose_gradients_overflow(backend: Backend) -> None:
    """Each framework's loss scaling (torch's GradScaler, Keras's LossScaleOptimizer, jmp's dynamic
    loss scale in Optax): a batch that overflows float16 (pixels × 10⁶, past its largest value
    65,504) leaves the parameters and the optimizer as they were; the next batch trains."""
    case = ZOO_CASES["digits_mlp"]
    params, (x, targets) = case.params(0), case.batch(0)
    model = built(backend, case.spec, params, precision="mixed_float16")
    optimizer = backend.make_optimizer(model, OPTIMIZER_ZOO["adam_torch_default"])
    compiled = backend.trains_compiled  # as the framework's own loop steps
    backend.train_step(model, optimizer, x * 1e6, targets, case.trains_with, compiled=compiled)
    after_overflow = backend.export_params(model)
    assert all(np.array_equal(after_overflow[name], params[name]) for name in params)
    assert np.isfinite(backend.train_step(model, optimizer, x, targets, case.trains_with, compiled=compiled))
    trained = backend.export_params(model)
    assert all(not np.array_equal(trained[name], params[name]) for name in params)


def test_a_float64_model_holds_takes_and_returns_float64(backend: Backend) -> None:
    case = ZOO_CASES["digits_mlp"]
    params = {name: value.astype(np.float64) + 1e-12 for name, value in case.params(0).items()}  # not float32 values
    model = built(backend, case.spec, params, precision="float64")
    assert model.precision == "float64"  # type: ignore[attr-defined]
    exported = backend.export_params(model)
    assert all(exported[name].dtype == np.float64 and np.array_equal(exported[name], params[name]) for name in params)
    x, targets = case.batch(0)
    assert backend.forward(model, x.astype(np.float32)).dtype == np.float64  # a float32 batch is taken as float64
    _, grads = backend.loss_and_grads(model, x, targets, case.trains_with)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float64)}


def test_float64_optimizer_steps_match_the_judge(backend: Backend) -> None:
    """Canonical float64 gradients through the native optimizer, and a whole train step, land on the
    judge's float64 update: the optimizer's state and arithmetic follow the model's precision."""
    case = ZOO_CASES["digits_mlp"]
    params, (x, targets) = case.params(0), case.batch(0)
    model = built(backend, case.spec, params, precision="float64")
    optimizer = backend.make_optimizer(model, SGD)
    judge = ref.ReferenceOptimizer(SGD, params)
    expected = {name: value.astype(np.float64) for name, value in params.items()}
    tol = tolerance(witness_check(case.spec, backend.name, optimizer=True), "float64", backend.device())
    for step in range(3):
        _, grads = backend.loss_and_grads(model, x, targets, case.trains_with)
        if step < 2:
            backend.apply_gradients(model, optimizer, grads)
        else:
            backend.train_step(model, optimizer, x, targets, case.trains_with)
        expected = judge.step(expected, grads)
        errors = per_tensor_errors(case.spec, backend.export_params(model), expected)
        worst = max(errors, key=errors.__getitem__)
        assert errors[worst] <= tol.rtol, (step, worst, errors[worst])


@pytest.mark.exhaustive
def test_deep_float64_gradients_jump_where_inputs_move_by_float32_rounding(backend: Backend) -> None:
    """Why deep ReLU networks' float32 gradients are not judged element by element
    (:data:`spec.cases.DEEP_GRADIENTS`): moving ResNet-18's inputs by 1e-6 of their range moves its
    float64 logits smoothly but its float64 gradient by several percent in some tensor, as units
    cross ReLU kinks (measured: 3.6e-2 to 2.2e-1 on each of six batches, docs/precision.md)."""
    case = ZOO_CASES["resnet18_cifar"]
    params, (x, targets) = case.params(0), case.batch(0, size=2)
    model = built(backend, case.spec, params, precision="float64")
    _, grads = backend.loss_and_grads(model, x, targets, case.trains_with)
    logits = backend.logits(model, x, training=True)
    rng = np.random.default_rng(0)
    jumps = []
    for _ in range(3):
        moved = x + 1e-6 * np.abs(x).max() * rng.standard_normal(x.shape)
        logit_change = np.abs(backend.logits(model, moved, training=True) - logits).max() / np.abs(logits).max()
        assert logit_change < 1e-4  # the outputs follow the inputs smoothly
        jumps.append(
            max(
                per_tensor_errors(
                    case.spec, backend.loss_and_grads(model, moved, targets, case.trains_with)[1], grads
                ).values()
            )
        )
    assert max(jumps) > 1e-2, jumps


def test_cpu_info_reads_the_first_cpu_s_fields_and_none_for_what_linux_does_not_tell() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo: not Linux")
    first_flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags"))
    assert cpu_flags() == frozenset(first_flags.split(":", 1)[1].split())
    assert cpu_info("no such field") is None
