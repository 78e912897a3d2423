"""Benchmarks: forward and train step of every zoo model on every backend, eager and compiled, next
to the hand-written baseline of each framework and the machine's float32 matmul peak.

``make test`` runs each once as a smoke test (``--benchmark-disable``); ``make bench`` times them and
saves pytest-benchmark's JSON, from which ``make compare`` writes the speed table. Compilation is
excluded from the timed rounds: the first call is timed on its own and reported as
``compile_seconds``. Each table (benchmark group) compares the backends on one model, step and mode.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest

from spec.backend import Backend, engine_of
from spec.cases import FIRST_OF_KIND, ZOO_CASES
from spec.errors import UnsupportedOption
from spec.models import ZOO, ModelSpec
from spec.optimizers import OptimizerSpec
from spec.params import count_params, init_params
from spec.training import make_optimizer_substituting
from tests.bench.baselines import BASELINES, matmul

BATCH = 128  # the classic MNIST and CIFAR batch
DEEP_BATCH = 32  # a deep network's (ModelSpec.is_deep: the ResNets) step at 128 takes seconds on a CPU
# Deep models whose smoke run (first calls compile and run for minutes on a 2-core CPU) only `make bench`
# does; the equivalence tests (tests/contract, tests/test_vision.py) run their code paths on the same backends.
SMOKE_SKIPPED = {name for name, spec in ZOO.items() if spec.is_deep and count_params(spec).total > 5_000_000}
# `make test` smoke-runs the smallest zoo model of each kind (spec.cases.FIRST_OF_KIND) and mnist_mlp (the
# baselines' model): every kind's benchmark code on every backend and mode — but a deep one's, whose
# smallest takes 30 s of first calls (the vision tests run its paths). The other models' smoke runs
# (first calls that trace and compile for seconds each, 200 s in all on 2 cores) are in the exhaustive tier.
SMOKE_MODELS = {"mnist_mlp"} | {name for name in FIRST_OF_KIND.values() if not ZOO[name].is_deep}
MODEL_CASES = [
    pytest.param(name, id=name, marks=[] if name in SMOKE_MODELS else [pytest.mark.exhaustive]) for name in ZOO
]
MODES = {"eager": False, "compiled": True}
# Keras's classic RMSprop; torch computes ε outside the root instead, which costs the same.
OPTIMIZER = OptimizerSpec("rmsprop", 1e-3, rho=0.9, epsilon=1e-7, epsilon_placement="inside_sqrt")
PEAK_SIZE = 2048  # 17 GFLOP per matmul: long enough to reach the peak, short enough to repeat
# First calls that compile for 10–30 s on a 2-core CPU; a smoke run (benchmarks disabled) skips them,
# and the equivalence tests already run these paths (tests/test_training.py).
SLOW_FIRST_CALL = {("torch", "compiled"), ("jax", "eager")}  # (engine, mode): Keras's on torch and JAX too
# Calls slower than this (eager recurrent and ResNet steps: 0.2–3 s) run a fixed 3 rounds instead of
# make bench's minimum of 15: their spread between rounds is a few percent, and even 5 rounds of them
# took two of make bench's fifteen minutes on a 2-core EPYC.
SLOW_CALL_SECONDS = 0.15
SLOW_CALL_ROUNDS = 3


def group(model: str, kind: str, mode: str) -> str:
    return f"{model} · {kind} · {mode}"


def batch_size(spec: ModelSpec) -> int:
    return DEEP_BATCH if spec.is_deep else BATCH


def batch_for(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """The zoo model's contract case's batch (:data:`spec.cases.ZOO_CASES`), at the benchmark's size."""
    return ZOO_CASES[spec.name].batch(size=batch_size(spec))


def on_device(backend: Backend, array: np.ndarray) -> object:
    """``array`` as the framework's own array on its device, made once before timing: the
    hand-written baselines hold their batches on the device too, and every backend accepts its
    framework's arrays where the contract says numpy (without copying them)."""
    match engine_of(backend.name):
        case "torch":
            import torch

            return torch.as_tensor(array, device=backend.device())
        case "tensorflow":
            import tensorflow as tf

            return tf.constant(array)
        case "jax":
            import jax

            return jax.device_put(array)
    return array


def build(backend: Backend, spec: ModelSpec) -> object:
    """The backend's model from the canonical init, or a skip naming what its framework cannot express."""
    try:
        return backend.build(spec, init_params(spec, 0))
    except UnsupportedOption as exc:
        pytest.skip(str(exc))


def skip_heavy_smoke_run(benchmark, model_name: str) -> None:
    if benchmark.disabled and model_name in SMOKE_SKIPPED:
        pytest.skip(f"{model_name}: minutes of compiling and running on a small CPU; `make bench` times it")


def run_benchmark(benchmark, backend: Backend, mode: str, call: Callable[[], object], **info: object) -> object:
    """Time ``call``'s first run (tracing and compilation) apart, then benchmark the warm calls."""
    if benchmark.disabled and (engine_of(backend.name), mode) in SLOW_FIRST_CALL:
        pytest.skip(f"{backend.name} {mode}: the first call compiles for 10–30 s here; `make bench` times it")
    start = time.perf_counter()
    call()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    call()  # a second warm-up: caches, allocator, any retrace on a changed input signature
    warm_seconds = time.perf_counter() - start
    benchmark.extra_info.update(
        backend=backend.name, mode=mode, threads=backend.threads(), compile_seconds=compile_seconds, **info
    )
    if warm_seconds > SLOW_CALL_SECONDS:
        return benchmark.pedantic(call, rounds=SLOW_CALL_ROUNDS, iterations=1)
    return benchmark(call)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("model_name", MODEL_CASES)
def test_forward(benchmark, backend: Backend, model_name: str, mode: str) -> None:
    skip_heavy_smoke_run(benchmark, model_name)
    spec = ZOO[model_name]
    x, targets = batch_for(spec)
    model = build(backend, spec)
    x_device = on_device(backend, x)
    benchmark.group = group(model_name, "forward", mode)
    logits = run_benchmark(
        benchmark,
        backend,
        mode,
        lambda: backend.logits(model, x_device, compiled=MODES[mode]),
        model=model_name,
        kind="forward",
        batch=len(x),
        flops=spec.forward_flops(len(x)),
    )
    per_example = targets.shape[1:] if targets.ndim > 1 else (spec.output_size,)  # class ids: one per example
    assert logits.shape == (len(x), *per_example) and np.isfinite(logits).all()


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("model_name", MODEL_CASES)
def test_train_step(benchmark, backend: Backend, model_name: str, mode: str) -> None:
    skip_heavy_smoke_run(benchmark, model_name)
    spec = ZOO[model_name]
    x, y = (on_device(backend, a) for a in batch_for(spec))
    model = build(backend, spec)
    optimizer, _ = make_optimizer_substituting(backend, model, OPTIMIZER, ("epsilon_placement",))
    benchmark.group = group(model_name, "train step", mode)
    loss = run_benchmark(
        benchmark,
        backend,
        mode,
        lambda: backend.train_step(model, optimizer, x, y, spec.default_loss, compiled=MODES[mode]),
        model=model_name,
        kind="train step",
        batch=len(x),
        flops=spec.train_step_flops(len(x)),
    )
    assert math.isfinite(loss)


def test_baseline_train_step(benchmark, backend: Backend) -> None:
    """The hand-written minimal step of the backend's engine, in the same table as our compiled
    mnist_mlp step; and, timed in alternating rounds with it, our own step, for the ratio the 1.1×
    bound is about. Keras on JAX or torch is timed against the hand-written JAX or torch step: the
    ratio is what Keras adds over its engine."""
    spec = ZOO["mnist_mlp"]
    benchmark.group = group("mnist_mlp", "train step", "compiled")
    baseline = BASELINES[engine_of(backend.name)]()
    loss = run_benchmark(
        benchmark,
        backend,
        "compiled",
        baseline,
        model="mnist_mlp",
        kind="train step",
        batch=BATCH,
        flops=spec.train_step_flops(BATCH),
        baseline=True,
    )
    assert math.isfinite(loss)
    if not benchmark.disabled:
        x, y = (on_device(backend, a) for a in batch_for(spec))
        model = build(backend, spec)
        optimizer, _ = make_optimizer_substituting(backend, model, OPTIMIZER, ("epsilon_placement",))
        loss_name = spec.default_loss
        benchmark.extra_info["interleaved_ratio"] = interleaved_ratio(
            lambda: backend.train_step(model, optimizer, x, y, loss_name, compiled=True), baseline
        )


INTERLEAVED_ROUNDS, INTERLEAVED_CALLS = 21, 50


def interleaved_ratio(ours: Callable[[], object], baseline: Callable[[], object]) -> float:
    """Median over alternating rounds of (our time / the baseline's time), each round
    :data:`INTERLEAVED_CALLS` calls of each: both see the same machine state, which separate
    benchmarks minutes apart do not (sub-2-ms steps varied by up to 1.7× between runs here)."""
    for call in (ours, baseline, ours, baseline):  # compiled and warm
        call()
    ratios = []
    for _ in range(INTERLEAVED_ROUNDS):
        seconds = []
        for call in (ours, baseline):
            start = time.perf_counter()
            for _ in range(INTERLEAVED_CALLS):
                call()
            seconds.append(time.perf_counter() - start)
        ratios.append(seconds[0] / seconds[1])
    return float(np.median(ratios))


def test_matmul_peak(benchmark, backend: Backend) -> None:
    """The float32 matmul rate of each framework; the report takes the fastest as the machine's peak."""
    benchmark.group = "float32 matmul peak"
    value = run_benchmark(
        benchmark,
        backend,
        "compiled" if engine_of(backend.name) != "torch" else "eager",  # torch's mm is a library call already
        matmul(engine_of(backend.name), PEAK_SIZE),
        kind="matmul",
        flops=2 * PEAK_SIZE**3,
    )
    assert math.isfinite(value)
