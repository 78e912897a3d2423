"""Optimizers: spec validation, every backend's native optimizer vs the float64 judge step by step,
the options a framework cannot express, and K-step training trajectories across backends."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.data import batch_indices, digits
from spec.errors import SpecError, UnsupportedOption
from spec.models import MLPSpec, get_model
from spec.optimizers import OptimizerSpec
from spec.params import init_params
from spec.schedules import ScheduleSpec
from spec.tolerances import max_scaled_error, tolerance

SPEC = get_model("digits_mlp")
STEPS = 5


def adam(kind: str = "adam", **kw: object) -> OptimizerSpec:
    fields = dict(learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, epsilon_placement="corrected") | kw
    return OptimizerSpec(kind, **fields)  # type: ignore[arg-type]


def rmsprop(**kw: object) -> OptimizerSpec:
    fields = dict(learning_rate=1e-3, rho=0.9, epsilon=1e-3, epsilon_placement="inside_sqrt") | kw
    return OptimizerSpec("rmsprop", **fields)  # type: ignore[arg-type]


def adagrad(**kw: object) -> OptimizerSpec:
    # a₀ = 0 (torch's default; Keras and Optax default to 0.1) keeps the accumulator near g², where
    # the placement of epsilon matters.
    fields = dict(learning_rate=1e-2, initial_accumulator=0.0, epsilon=1e-3, epsilon_placement="inside_sqrt") | kw
    return OptimizerSpec("adagrad", **fields)  # type: ignore[arg-type]


# Epsilons of 1e-3 with gradients of 1e-2 make the placement of epsilon visible in the numbers.
CASES = {
    "sgd": OptimizerSpec("sgd", 0.1),
    "sgd_momentum": OptimizerSpec("sgd", 0.1, momentum=0.9),
    "sgd_nesterov": OptimizerSpec("sgd", 0.1, momentum=0.9, nesterov=True),
    "adam_corrected": adam(epsilon=1e-3),
    "adam_uncorrected": adam(epsilon=1e-3, epsilon_placement="uncorrected"),
    "adam_tiny_eps": adam(),
    "adamw": adam("adamw", learning_rate=1e-2, beta2=0.99, weight_decay=0.1),
    "adamw_uncorrected": adam(
        "adamw", learning_rate=1e-2, epsilon=1e-3, epsilon_placement="uncorrected", weight_decay=0.05
    ),
    "rmsprop_inside": rmsprop(),
    "rmsprop_outside": rmsprop(epsilon_placement="outside_sqrt"),
    "rmsprop_momentum": rmsprop(momentum=0.5),
    "rmsprop_centered_outside": rmsprop(centered=True, epsilon_placement="outside_sqrt", momentum=0.5),
    "rmsprop_centered_inside": rmsprop(centered=True),
    "adagrad_inside": adagrad(),
    "adagrad_outside": adagrad(epsilon_placement="outside_sqrt"),
    # learning-rate schedules inside the optimizers (the update at step t uses the rate of step t − 1)
    "sgd_cosine": OptimizerSpec("sgd", ScheduleSpec("cosine", 0.1, STEPS, floor=0.01)),
    "sgd_momentum_step": OptimizerSpec("sgd", ScheduleSpec("step", 0.1, STEPS, gamma=0.5, step_size=2), momentum=0.9),
    "adam_warmup_cosine": adam(
        learning_rate=ScheduleSpec("warmup_cosine", 1e-2, STEPS, floor=1e-4, warmup_steps=2, warmup_start=1e-3),
        epsilon=1e-3,
    ),
    "adamw_exponential": adam(
        "adamw",
        learning_rate=ScheduleSpec("exponential", 1e-2, STEPS, gamma=0.5),
        weight_decay=0.1,
        epsilon=1e-3,
        epsilon_placement="uncorrected",
    ),
    "rmsprop_momentum_cosine": rmsprop(
        learning_rate=ScheduleSpec("cosine", 1e-2, STEPS, floor=0.0), momentum=0.5, epsilon_placement="outside_sqrt"
    ),
    "adagrad_constant_schedule": adagrad(learning_rate=ScheduleSpec("constant", 1e-2, STEPS)),
    # gradients of norm ≈ 0.8 (0.01·N(0,1) over 6,570 parameters) clipped to 0.3
    "sgd_momentum_clipped": OptimizerSpec("sgd", 0.1, momentum=0.9, clip_global_norm=0.3),
    "adamw_clipped": adam("adamw", learning_rate=1e-2, weight_decay=0.1, epsilon=1e-3, clip_global_norm=0.3),
    "rmsprop_clipped": rmsprop(clip_global_norm=0.3, epsilon_placement="outside_sqrt"),
}

# What each framework's own optimizers cannot express (source locations in docs/framework-differences.md).
NOT_NATIVE = {
    "torch": {
        "rmsprop_inside",
        "rmsprop_momentum",
        "rmsprop_centered_inside",
        "adagrad_inside",
        "adagrad_constant_schedule",
    },
    "keras": {
        "rmsprop_outside",
        "rmsprop_centered_outside",
        "adagrad_outside",
        "sgd_momentum_step",
        "rmsprop_momentum_cosine",
        "rmsprop_clipped",
    },
    "jax": {"adagrad_outside", "rmsprop_momentum_cosine"},
}


def gradient_sequence(params: dict[str, np.ndarray], steps: int = STEPS, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {n: (0.01 * rng.standard_normal(v.shape)).astype(np.float32) for n, v in params.items()} for _ in range(steps)
    ]


def judge_trajectory(opt: OptimizerSpec, params: dict, grads: list[dict]) -> list[dict]:
    judge = ref.ReferenceOptimizer(opt, params)
    current = {n: v.astype(np.float64) for n, v in params.items()}
    out = []
    for g in grads:
        current = judge.step(current, g)
        out.append(current)
    return out


# What a backend runs as its own port of the rule where its optimizers cannot express it
# (make_optimizer(..., ported=True)): torch divides by √(v + ε) for a model ported from Keras or JAX.
# Each backend's port covers every rule its own optimizers cannot express: torch's EpsilonInsideRoot,
# Keras's PortedRule (ε outside the root, the rate outside the buffer), Optax's ported_rule chain.
PORTED: dict[str, set[str]] = {
    "torch": {case for case in NOT_NATIVE["torch"] if CASES[case].epsilon_placement == "inside_sqrt"},
    "keras": {case for case in NOT_NATIVE["keras"] if CASES[case].kind in ("sgd", "rmsprop", "adagrad")},
    "jax": {case for case in NOT_NATIVE["jax"] if CASES[case].kind in ("rmsprop", "adagrad")},
}


@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_steps_match_the_judge(backend: Backend, backend_name: str, case: str) -> None:
    opt = CASES[case]
    params = init_params(SPEC, 0)
    model = backend.build(SPEC, params)
    if case in NOT_NATIVE[backend.framework]:
        with pytest.raises(UnsupportedOption, match=rf"optimizer\.\w+.*{backend_name} backend"):
            backend.make_optimizer(model, opt)
        if case not in PORTED[backend.framework]:
            with pytest.raises(UnsupportedOption, match=rf"optimizer\.\w+.*{backend_name} backend"):
                backend.make_optimizer(model, opt, ported=True)
            return
    optimizer = backend.make_optimizer(model, opt, ported=case in PORTED[backend.framework])
    grads = gradient_sequence(params)
    tol = tolerance("optimizer_step", "float32", backend.device())
    for step, (g, expected) in enumerate(zip(grads, judge_trajectory(opt, params, grads), strict=True), start=1):
        backend.apply_gradients(model, optimizer, g)
        got = backend.export_params(model)
        for name in expected:
            error = max_scaled_error(got[name], expected[name], tol)
            assert error <= 1.0, f"{case} step {step} {name}: {error:.3g}× tolerance"


# The class each backend's port runs as and a native RMSprop's (JAX's are both nnx.Optimizer over a chain)
OPTIMIZER_CLASSES = {"torch": ("EpsilonInsideRoot", "RMSprop"), "keras": ("PortedRule", "RMSprop")}


def test_a_ported_rule_is_never_the_default(backend: Backend, backend_name: str) -> None:
    """A backend's port of another framework's rule runs only when asked for: a rule its optimizers
    cannot express is refused by default, naming the way to the port, and a rule they can express
    stays native when a port is allowed."""
    model = backend.build(SPEC, init_params(SPEC, 0))
    for case in sorted(PORTED[backend.framework]):
        with pytest.raises(UnsupportedOption, match=r"ported=True"):
            backend.make_optimizer(model, CASES[case])
    ported_cases = PORTED[backend.framework]
    if backend.framework in OPTIMIZER_CLASSES:
        port_class, native_class = OPTIMIZER_CLASSES[backend.framework]
        native_case = next(case for case in CASES if case.startswith("rmsprop") and case not in ported_cases)
        ported = backend.make_optimizer(model, CASES[sorted(ported_cases)[0]], ported=True)
        assert type(ported).__name__ == port_class
        assert type(backend.make_optimizer(model, CASES[native_case], ported=True)).__name__ == native_class


@pytest.mark.parametrize(
    ("case", "variant"),
    [
        ("adam_corrected", "adam_uncorrected"),
        ("rmsprop_inside", "rmsprop_outside"),
        ("adagrad_inside", "adagrad_outside"),
        ("sgd_momentum", "sgd_nesterov"),
        ("rmsprop_centered_inside", "rmsprop_momentum"),
        ("sgd", "sgd_cosine"),
        ("adam_corrected", "adam_warmup_cosine"),
        ("sgd_momentum", "sgd_momentum_clipped"),
    ],
)
def test_tolerance_tells_the_variants_apart(case: str, variant: str) -> None:
    """If a backend used the other formula, the step test would fail: the judge's two trajectories
    differ by far more than the tolerance."""
    params = init_params(SPEC, 0)
    grads = gradient_sequence(params)
    a = judge_trajectory(CASES[case], params, grads)[-1]
    b = judge_trajectory(CASES[variant], params, grads)[-1]
    tol = tolerance("optimizer_step")
    assert max(max_scaled_error(a[n], b[n], tol) for n in a) > 10


def test_judge_adam_first_step_by_hand() -> None:
    # With m₀ = v₀ = 0, Adam's first corrected step is lr·g/(|g| + ε): ≈ lr·sign(g) for |g| ≫ ε.
    opt = adam(learning_rate=0.1, epsilon=1e-8)
    params = {"w": np.array([1.0, -2.0])}
    new = ref.ReferenceOptimizer(opt, params).step(params, {"w": np.array([0.5, -4.0])})
    np.testing.assert_allclose(new["w"], [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 4.0 / (4.0 + 1e-8)])


def test_judge_sgd_momentum_by_hand() -> None:
    opt = OptimizerSpec("sgd", 0.5, momentum=0.9)
    judge = ref.ReferenceOptimizer(opt, {"w": np.array([0.0])})
    w1 = judge.step({"w": np.array([0.0])}, {"w": np.array([1.0])})  # b = 1 → w = −0.5
    w2 = judge.step(w1, {"w": np.array([1.0])})  # b = 1.9 → w = −0.5 − 0.95
    np.testing.assert_allclose(w2["w"], [-1.45])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "lbfgs", "learning_rate": 0.1}, "optimizer"),
        ({"kind": "sgd", "learning_rate": 0.1, "clip_global_norm": 0.0}, "optimizer.clip_global_norm"),
        ({"kind": "sgd", "learning_rate": -0.1}, "optimizer.learning_rate"),
        ({"kind": "sgd", "learning_rate": 0.0}, "optimizer.learning_rate"),
        ({"kind": "sgd", "learning_rate": float("nan")}, "optimizer.learning_rate"),
        ({"kind": "sgd", "learning_rate": 0.1, "momentum": 1.0}, "optimizer.momentum"),
        ({"kind": "sgd", "learning_rate": 0.1, "nesterov": True}, "optimizer.nesterov"),
        ({"kind": "sgd", "learning_rate": 0.1, "epsilon": 1e-8}, "optimizer.epsilon"),
        (
            {"kind": "adam", "learning_rate": 0.1, "beta1": 0.9, "beta2": 0.999, "epsilon_placement": "corrected"},
            "optimizer.epsilon",
        ),
        (
            {
                "kind": "adam",
                "learning_rate": 0.1,
                "beta1": 0.9,
                "beta2": 0.999,
                "epsilon": 1e-8,
                "epsilon_placement": "inside_sqrt",
            },
            "optimizer.epsilon_placement",
        ),
        (
            {
                "kind": "adam",
                "learning_rate": 0.1,
                "beta1": 1.5,
                "beta2": 0.999,
                "epsilon": 1e-8,
                "epsilon_placement": "corrected",
            },
            "optimizer.beta1",
        ),
        (
            {
                "kind": "adam",
                "learning_rate": 0.1,
                "beta1": 0.9,
                "beta2": 0.999,
                "epsilon": 1e-8,
                "epsilon_placement": "corrected",
                "weight_decay": 0.01,
            },
            "optimizer.weight_decay",
        ),
        (
            {"kind": "rmsprop", "learning_rate": 0.1, "epsilon": 1e-7, "epsilon_placement": "inside_sqrt"},
            "optimizer.rho",
        ),
        (
            {
                "kind": "adagrad",
                "learning_rate": 0.1,
                "epsilon": 1e-7,
                "epsilon_placement": "inside_sqrt",
                "initial_accumulator": -1.0,
            },
            "optimizer.initial_accumulator",
        ),
    ],
)
def test_bad_optimizer_spec_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        OptimizerSpec(**kwargs)
    assert info.value.field == field


# --- K-step training trajectories across backends -------------------------------------------------

TRAJECTORY_STEPS = 30
# trajectory name -> (model, optimizer case); "adam_l2_in_loss" is Adam with the L2 term in the loss
TRAJECTORIES = {
    name: (SPEC, name)
    for name in ("sgd_momentum", "adam_corrected", "adamw", "rmsprop_inside", "rmsprop_centered_outside")
} | {"adam_l2_in_loss": (dataclasses.replace(SPEC, name="digits_mlp_l2", kernel_l2=1e-3), "adam_corrected")}
_trajectories: dict[tuple[str, str], tuple[list[float], dict[str, np.ndarray]]] = {}


def train_trajectory(backend: Backend, case: str) -> tuple[list[float], dict[str, np.ndarray]]:
    """Losses of TRAJECTORY_STEPS steps on the digits from the canonical init, and the final params
    (computed once per backend and case, then shared by the pairs that compare them)."""
    if (backend.name, case) not in _trajectories:
        spec, opt_case = TRAJECTORIES[case]
        _trajectories[backend.name, case] = _train(backend, spec, CASES[opt_case])
    return _trajectories[backend.name, case]


def _train(backend: Backend, spec: MLPSpec, opt: OptimizerSpec) -> tuple[list[float], dict[str, np.ndarray]]:
    split = digits(spec.input_shape)
    params = init_params(spec, 0)
    model = backend.build(spec, params)
    optimizer = backend.make_optimizer(model, opt)
    batches = batch_indices(len(split.x_train), 64, seed=0, drop_last=True)
    losses = []
    for step in range(TRAJECTORY_STEPS):
        idx = batches[step % len(batches)]
        loss, grads = backend.loss_and_grads(
            model, split.x_train[idx], split.y_train[idx], "sparse_categorical_crossentropy"
        )
        backend.apply_gradients(model, optimizer, grads)
        losses.append(loss)
    return losses, backend.export_params(model)


@pytest.mark.parametrize("case", list(TRAJECTORIES))
def test_training_trajectories_agree_across_backends(backends: tuple[Backend, Backend], case: str) -> None:
    lacking = [b.name for b in backends if TRAJECTORIES[case][1] in NOT_NATIVE[b.framework]]
    if lacking:
        pytest.skip(f"{case} is not expressible with the native optimizers of {', '.join(lacking)}")
    (loss_a, final_a), (loss_b, final_b) = (train_trajectory(b, case) for b in backends)
    assert loss_a[-1] < loss_a[0]  # it trains
    tol = tolerance("trajectory", "float32", backends[0].device())
    assert max_scaled_error(np.array(loss_a), np.array(loss_b), tol) <= 1.0
    for name in final_a:
        assert max_scaled_error(final_a[name], final_b[name], tol) <= 1.0, name
