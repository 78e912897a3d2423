"""The main job: every zoo model on every installed backend, compared with the float64 judge.

``python -m spec.report`` (or ``make compare``) prints a markdown table and writes it, with a JSON
copy, under ``reports/``. Columns: parameter count (from the framework, checked against the spec),
the largest forward error against the judge, the largest relative error of the gradient along random
directions (:func:`spec.reference.check_gradients`), and whether both are within the tolerance table;
then every model's logits in float32 and in mixed bfloat16 and float16 against the judge, the
optimizers against the judge, and the recipes' convergence with ``loss_curves.png`` (the
training loss of every backend overlaid, per recipe).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from spec import reference as ref
from spec.backend import (
    BACKEND_NAMES,
    KERAS_BACKEND_ENV,
    KERAS_ENGINES,
    THREADS_ENV,
    Backend,
    available_backends,
    process_backends,
)
from spec.cases import ZOO_CASES, Case, case_of, not_judged
from spec.data import digits
from spec.data.mixture import RING
from spec.errors import BackendUnavailable, PortError, SpecError, UnsupportedOption
from spec.models import ZOO
from spec.optimizers import OPTIMIZER_ZOO, OptimizerSpec
from spec.params import MIXED_PRECISIONS, Precision, count_params, init_params
from spec.port import load_spec
from spec.precision import cpu_info, per_tensor_errors, rounding_depth
from spec.recipes import (
    GAUSSIAN_RING,
    RECIPES,
    SEQUENCE_RECIPES,
    TRANSFORMER_RECIPES,
    RecipeSpec,
    recipe_split,
)
from spec.report.plots import loss_curve, plot_gan_samples, plot_loss_curves
from spec.report.site import SITE, build_site
from spec.report.speed import load_speed, speed_markdown
from spec.tolerances import RELATIVE_TO_MAGNITUDE, forward_check, max_scaled_error, mixed_tolerance, tolerance
from spec.training import History, fit

T = TypeVar("T")
BATCH = 64  # the optimizer comparison's minibatch
SEED = 0
LOSS_CURVES = "loss_curves.png"  # written beside compare.md
GAN_SAMPLES = "gan_samples.png"  # each GAN recipe's samples per backend, over its mixture's modes
DEFAULT_BENCH = Path("reports/bench.json")  # where `make bench` saves pytest-benchmark's JSON ...
KERAS_BENCH = "bench-{executor}.json"  # ... and beside it, that of each other Keras backend's run


@dataclass(frozen=True)
class Row:
    model: str
    architecture: str
    backend: str
    device: str
    params: int | None  # None (like the errors): the framework cannot express the model (see unsupported)
    params_match_spec: bool
    forward_max_abs_error: float | None
    forward_scaled_error: float | None  # forward error / tolerance: ≤ 1 is within tolerance
    gradient_max_rel_error: float | None  # None: not judged (ill-posed in float32: spec.cases.DEEP_GRADIENTS)
    gradient_tolerance: float
    seconds: float
    unsupported: str | None = None  # why the framework's own layers cannot build the model
    # the float32 gradients against the backend's own float64 build, worst tensor
    # (spec.precision.per_tensor_errors); measured for every model, ill-posed ones too
    witness_gradient_error: float | None = None

    @property
    def ok(self) -> bool:
        if self.unsupported is not None:  # a documented framework difference, not a failure
            return True
        gradient_ok = self.gradient_max_rel_error is None or self.gradient_max_rel_error <= self.gradient_tolerance
        forward_ok = self.forward_scaled_error is not None and self.forward_scaled_error <= 1.0
        return self.params_match_spec and forward_ok and gradient_ok


def default_bench() -> list[Path]:
    """What ``make bench`` wrote: its main run's JSON and each other Keras backend's."""
    others = [DEFAULT_BENCH.with_name(KERAS_BENCH.format(executor=name)) for name in KERAS_ENGINES]
    return [path for path in [DEFAULT_BENCH, *others] if path.exists()]


def cpu_model() -> str:
    """The CPU's marketing name where Linux tells it, else the architecture."""
    return cpu_info("model name") or platform.processor() or platform.machine()


@functools.cache
def judged(case: Case) -> tuple[np.ndarray, list[ref.JudgedDirection] | None]:
    """The judge's outputs on the case's batch and its directional derivatives (none where the case's
    gradients are not judged, :func:`spec.cases.not_judged`): once for every backend."""
    params, (x, targets) = case.params(SEED), case.gradient_batch(SEED)
    directions = None
    if not_judged(case, "gradients") is None:
        directions = ref.judge_directions(case.spec, params, x, targets, case.trains_with, seed=SEED)
    return ref.forward(case.spec, params, x), directions


def compare_model(case: Case, backend: Backend) -> Row:
    """Build the case's spec on ``backend`` from its parameters — the canonical init for a case that
    is not ``perturbed``, as :func:`main` runs them — and measure it against the judge on the case's
    gradient batch (:meth:`spec.cases.Case.gradient_batch`)."""
    start = time.perf_counter()
    spec = case.spec
    params = case.params(SEED)
    x, labels = case.gradient_batch(SEED)
    loss = case.trains_with
    device = backend.device()
    try:
        model = backend.build(spec, params)
    except UnsupportedOption as exc:
        return Row(
            spec.name, spec.describe(), backend.name, device, None, False, None, None, None,
            tolerance("gradient", "float32", device).rtol, time.perf_counter() - start, exc.allowed,
        )  # fmt: skip
    outputs = backend.forward(model, x)
    expected, directions = judged(case)
    _, grads = backend.loss_and_grads(model, x, labels, loss)
    witness_error = None
    try:  # a backend without a true float64 (finding 19) has no witness
        _, witness_grads = backend.loss_and_grads(backend.build(spec, params, precision="float64"), x, labels, loss)
        witness_error = max(per_tensor_errors(spec, grads, witness_grads).values())
    except UnsupportedOption:
        pass
    gradient_error = None
    if directions is not None:
        checks = ref.check_gradients(spec, params, x, labels, loss, grads, judged=directions)
        gradient_error = max(c.relative_error for c in checks)
    return Row(
        model=spec.name,
        architecture=spec.describe(),
        backend=backend.name,
        device=device,
        params=backend.count_params(model).total,
        params_match_spec=backend.count_params(model) == count_params(spec),
        forward_max_abs_error=float(np.abs(outputs - expected).max()),
        forward_scaled_error=max_scaled_error(
            outputs, expected, tolerance(forward_check(deep=spec.is_deep, training=False), "float32", device)
        ),
        gradient_max_rel_error=gradient_error,
        gradient_tolerance=tolerance("gradient", "float32", device).rtol,
        seconds=time.perf_counter() - start,
        witness_gradient_error=witness_error,
    )


PRECISION_BATCH = 4  # the precision section's batch: a full ResNet in bfloat16 runs on emulated kernels here
REPORTED_PRECISIONS: tuple[Precision, ...] = ("float32", *MIXED_PRECISIONS)


@dataclass(frozen=True)
class PrecisionRow:
    model: str
    backend: str
    depth: int  # the products a value passes through (spec.precision.rounding_depth)
    # per precision: max |logits − judge| over each example's largest output magnitude, and the error
    # over the precision's tolerance (≤ 1 is within it); None where the framework cannot build the model
    errors: dict[str, float | None]
    scaled: dict[str, float | None]

    @property
    def ok(self) -> bool:
        return all(value is None or value <= 1.0 for value in self.scaled.values())


def compare_precision(case: Case, backend: Backend) -> PrecisionRow:
    """The case's evaluation-mode logits on PRECISION_BATCH examples in float32, mixed bfloat16 and
    mixed float16, against the judge, each relative to the example's largest output magnitude
    (:func:`spec.reference.output_magnitude`)."""
    spec, device = case.spec, backend.device()
    params = case.params(SEED)
    x, _ = case.batch(SEED, size=PRECISION_BATCH)
    expected = ref.logits(spec, params, x)
    magnitude = ref.output_magnitude(spec, params, x)
    depth = rounding_depth(spec)
    errors: dict[str, float | None] = {}
    scaled: dict[str, float | None] = {}
    for precision in REPORTED_PRECISIONS:
        try:
            logits = backend.logits(backend.build(spec, params, precision=precision), x)
        except UnsupportedOption:
            errors[precision] = scaled[precision] = None
            continue
        errors[precision] = max_scaled_error(logits, expected, RELATIVE_TO_MAGNITUDE, magnitude)
        if precision == "float32":
            scaled[precision] = max_scaled_error(
                logits, expected, tolerance(forward_check(deep=spec.is_deep, training=False), "float32", device)
            )
        else:
            tol = mixed_tolerance("mixed_forward", precision, depth, device)
            scaled[precision] = max_scaled_error(logits, expected, tol, magnitude)
    return PrecisionRow(spec.name, backend.name, depth, errors, scaled)


def precision_markdown(rows: list[PrecisionRow]) -> str:
    lines = [
        "",
        f"## Precision: float32, mixed bfloat16 and mixed float16 vs the float64 judge ({PRECISION_BATCH} examples)",
        "",
        "Each model built in float32 and in each framework's native mixed precision (float32 variables; torch's",
        "autocast, Keras's mixed_* policies, Flax modules with a bfloat16 or float16 compute dtype): the largest",
        "error of its evaluation-mode logits relative to each example's largest output magnitude (Σ|w·h| + |b|,",
        "the absolute terms its output layer sums: rounding scales with them, not with an output that cancels to",
        "near 0). Mixed precision is held to 5 unit roundoffs (2⁻⁸, 2⁻¹¹) of the magnitude per product a value",
        "passes through (depth; spec/tolerances.py); float32 to its forward tolerance. Gradients and training in",
        "mixed precision are judged by the test suite (docs/precision.md).",
        "",
        "| model | backend | depth | float32 | mixed bfloat16 | mixed float16 | within tolerance |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        cells = ["not native" if r.errors[p] is None else f"{r.errors[p]:.2e}" for p in REPORTED_PRECISIONS]
        lines.append(f"| {r.model} | {r.backend} | {r.depth} | {' | '.join(cells)} | {'yes' if r.ok else '**NO**'} |")
    return "\n".join(lines) + "\n"


OPTIMIZER_MODEL = "digits_mlp"
OPTIMIZER_STEPS = 10


@dataclass(frozen=True)
class OptimizerRow:
    optimizer: str
    definition: str
    backend: str
    max_abs_error: float | None  # max |θ − judge θ| after OPTIMIZER_STEPS steps; None if not native
    scaled_error: float | None  # the same over the tolerance: ≤ 1 is within tolerance
    unsupported: str | None  # why the framework's own optimizer cannot express it
    ported: bool = False  # run by the backend's port of the rule, where its own cannot express it

    @property
    def ok(self) -> bool:
        return self.scaled_error is not None and self.scaled_error <= 1.0 if self.ran else True

    @property
    def ran(self) -> bool:
        return self.unsupported is None or self.ported


def compare_optimizer(name: str, opt: OptimizerSpec, backend: Backend) -> OptimizerRow:
    """OPTIMIZER_STEPS native optimizer steps with real gradients of the digits MLP, vs the judge's
    updates from the same parameters and gradients; where the framework's own optimizers cannot
    express the rule, the backend's port of it (``make_optimizer(..., ported=True)``), if it has one."""
    spec = ZOO[OPTIMIZER_MODEL]
    params = init_params(spec, SEED)
    model = backend.build(spec, params)
    unsupported = None
    try:
        optimizer = backend.make_optimizer(model, opt)
    except UnsupportedOption as exc:
        unsupported = exc.allowed
        try:
            optimizer = backend.make_optimizer(model, opt, ported=True)
        except UnsupportedOption:
            return OptimizerRow(name, opt.describe(), backend.name, None, None, unsupported)
    split = digits(spec.input_shape)
    judge = ref.ReferenceOptimizer(opt, params)
    expected = {n: v.astype(np.float64) for n, v in params.items()}
    for step in range(OPTIMIZER_STEPS):
        batch = slice(step * BATCH, (step + 1) * BATCH)
        # the judge applies its update to the backend's own gradients: only the optimizers are compared,
        # and differences cannot compound through the gradients
        _, grads = backend.loss_and_grads(model, split.x_train[batch], split.y_train[batch], spec.default_loss)
        backend.apply_gradients(model, optimizer, grads)
        expected = judge.step(expected, grads)
    got = backend.export_params(model)
    tol = tolerance("optimizer_step", "float32", backend.device())
    return OptimizerRow(
        name,
        opt.describe(),
        backend.name,
        max(float(np.abs(got[n] - expected[n]).max()) for n in got),
        max(max_scaled_error(got[n], expected[n], tol) for n in got),
        unsupported,
        ported=unsupported is not None,
    )


def optimizer_markdown(rows: list[OptimizerRow]) -> str:
    lines = [
        "",
        f"## Optimizers: {OPTIMIZER_STEPS} native steps on {OPTIMIZER_MODEL} vs the float64 judge",
        "",
        "Each framework's default optimizer written out as a spec (`spec.optimizers.OPTIMIZER_ZOO`), run",
        "with every backend's own optimizer on real digits gradients; the judge applies the spec's update",
        "rule to the same gradients. 'not native' names what the framework's optimizer cannot express;",
        "'ported' marks a rule run by the backend's own port of it (`make_optimizer(..., ported=True)`),",
        "which a ported model's training uses; native stays the default everywhere else.",
        "",
        "| optimizer | definition | backend | max abs error | within tolerance |",
        "|---|---|---|---:|:---:|",
    ]
    for r in rows:
        error = "not native" if not r.ran else f"{r.max_abs_error:.2e}" + (" (ported)" if r.ported else "")
        verdict = f"— ({r.unsupported})" if not r.ran else ("yes" if r.ok else "**NO**")
        lines.append(f"| {r.optimizer} | `{r.definition}` | {r.backend} | {error} | {verdict} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ConvergenceRow:
    recipe: str
    optimizer: str
    backend: str
    final_train_loss: float | None  # mean loss of the last epoch's steps; None: not run (see notes)
    test_accuracy: float | None  # None for a regression, or not run
    test_loss: float | None  # the recipe's loss on the test set (float64)
    target_accuracy: float | None
    target_loss: float | None
    steps_to_target: int | None
    seconds: float
    notes: str = ""  # the options this backend ran natively instead of as specified, early stopping
    unsupported: bool = False  # the framework's own layers cannot express the model (see notes)
    target_modes: int | None = None  # a GAN's: the mixture's modes its samples must cover
    modes_covered: int | None = None

    @property
    def ok(self) -> bool:
        if self.unsupported:
            return True
        accuracy_ok = self.target_accuracy is None or (self.test_accuracy or 0.0) >= self.target_accuracy
        loss_ok = self.target_loss is None or (self.test_loss is not None and self.test_loss <= self.target_loss)
        modes_ok = self.target_modes is None or (self.modes_covered or 0) >= self.target_modes
        return accuracy_ok and loss_ok and modes_ok


def compare_recipe(recipe: RecipeSpec, backend: Backend) -> tuple[ConvergenceRow, History | None]:
    start = time.perf_counter()
    try:
        history = fit(backend, recipe, recipe_split(recipe))
    except UnsupportedOption as exc:
        row = ConvergenceRow(
            recipe.name, recipe.optimizer.describe(), backend.name, None, None, None,
            recipe.target_accuracy, recipe.target_loss, None, 0.0, f"not native: {exc.allowed}", unsupported=True,
        )  # fmt: skip
        return row, None
    seconds = time.perf_counter() - start
    per_epoch = len(history.step_loss) // len(history.epoch_test_accuracy)
    notes = ["compiled steps" if history.compiled else "eager steps"]
    notes += [f"{name} {native} (spec: {value})" for name, (value, native) in history.substitutions.items()]
    if history.stopped_epoch:
        notes.append(f"stopped after epoch {history.stopped_epoch}")
    if history.best_epoch and recipe.early_stopping and recipe.early_stopping.restore_best:
        notes.append(f"weights of epoch {history.best_epoch}")
    if history.coverage is not None:
        coverage = history.coverage
        if recipe.data == GAUSSIAN_RING:
            quality = f"{coverage.high_quality:.0%} of samples within 3σ of one"
        else:
            quality = f"{coverage.high_quality:.0%} of samples as close to a training digit as real digits are"
        notes.append(f"{coverage.modes_covered} modes covered, {quality}")
    accuracy = None if math.isnan(history.final_test_accuracy) else history.final_test_accuracy
    if recipe.target_loss is not None:
        steps = history.steps_to_loss(recipe.target_loss)
    else:
        steps = history.steps_to(recipe.target_accuracy or 0.0)
    row = ConvergenceRow(
        recipe.name,
        recipe.optimizer.describe(),
        backend.name,
        float(np.mean(history.step_loss[-per_epoch:])),
        accuracy,
        history.final_test_loss,
        recipe.target_accuracy,
        recipe.target_loss,
        steps,
        seconds,
        "; ".join(notes),
        target_modes=recipe.target_modes,
        modes_covered=None if history.coverage is None else history.coverage.modes_covered,
    )
    return row, history


def convergence_markdown(rows: list[ConvergenceRow]) -> str:
    lines = [
        "",
        "## Convergence: the recipes on the embedded digits and the synthetic sequence tasks",
        "",
        "Identical init and batches on every backend; each step is the backend's native train step, run as the",
        "framework's own training loop runs it (the notes say which): torch's eagerly, Keras's and JAX's compiled.",
        "Wall time includes compilation. Notes name any option a backend ran natively instead of as specified",
        "(only where the recipe allows it) and early stopping. The target is a test accuracy, or for the",
        "regressions a test loss to get below; a GAN's is the modes of its mixture that its samples cover",
        f"(each backend's samples: [{GAN_SAMPLES}]({GAN_SAMPLES})).",
        "",
        f"![Training loss per step, backends overlaid]({LOSS_CURVES})",
        "",
        "| recipe | optimizer | backend | final train loss | test accuracy | test loss | target | steps to target "
        "| wall time (s) | notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r.target_accuracy is not None:
            target = f"{r.target_accuracy:.0%}"
        elif r.target_modes is not None:
            target = f"{r.target_modes} modes"
        else:
            target = f"loss ≤ {r.target_loss:g}"
        if r.unsupported:
            lines.append(f"| {r.recipe} | `{r.optimizer}` | {r.backend} | — | — | — | {target} | — | — | {r.notes} |")
            continue
        reached = "—" if r.steps_to_target is None else str(r.steps_to_target)
        verdict = "" if r.ok else " **target missed**"
        accuracy = "—" if r.test_accuracy is None else f"{r.test_accuracy:.2%}"
        lines.append(
            f"| {r.recipe} | `{r.optimizer}` | {r.backend} | {r.final_train_loss:.4f} | {accuracy} "
            f"| {r.test_loss:.4f}{verdict} | {target} | {reached} | {r.seconds:.1f} | {r.notes} |"
        )
    return "\n".join(lines) + "\n"


def markdown(rows: list[Row], header: dict[str, str], unavailable: dict[str, str]) -> str:
    lines = ["# triptych: cross-backend comparison", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    lines += [f"- **{name}**: not run ({reason})" for name, reason in unavailable.items()]
    lines += [
        "",
        "Forward error: max |output − judge| over a batch of embedded digits, of Gaussian sequences for",
        "the recurrent models, or of padded token sequences for the Transformers (float32 backend, float64",
        "judge; every step's output for per-step heads).",
        "Gradient error: max relative error of the loss's directional derivative, backend gradient vs",
        "float64 central differences, over random directions per tensor and across all tensors, on the",
        "digits plus a little noise (exactly equal pixels would put activations exactly on ReLU kinks).",
        '"not native": the framework\'s own layers cannot express the model (the reason is given).',
        "Gradient vs float64: the backend's float32 gradients against its own float64 build (a witness that",
        "agrees with the judge and with the other backends' to float64 rounding), worst tensor, max |Δ| over",
        "the tensor's largest element. Where the gradient error reads —, float32 gradients are ill-posed:",
        "in a deep ResNet trained in full some ReLU inputs lie within float32 rounding of their kink, and",
        "the float64 gradient itself jumps by percents when the inputs move by 1e-6 (spec.cases.DEEP_GRADIENTS);",
        "its number then says how far this backend's rounding landed on this batch. Gradient vs float64",
        "reads — for Keras on JAX and on torch, which have no true float64 (docs/findings.md, finding 19).",
        "Keras on JAX (keras-jax) and on torch (keras-torch) run the same impls/keras code as keras (on",
        "TensorFlow), each in a process of its own, as Keras fixes its backend once per process.",
        "",
        "| model | architecture | backend | device | params | forward max abs error | gradient max rel error "
        "| gradient vs float64 | within tolerance |",
        "|---|---|---|---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        if r.unsupported is not None:
            lines.append(
                f"| {r.model} | {r.architecture} | {r.backend} | {r.device} | not native | — | — | — "
                f"| — ({r.unsupported}) |"
            )
            continue
        params = f"{r.params:,}" + ("" if r.params_match_spec else " ≠ spec")
        lines.append(
            f"| {r.model} | {r.architecture} | {r.backend} | {r.device} | {params} | {r.forward_max_abs_error:.2e} "
            f"| {'—' if r.gradient_max_rel_error is None else f'{r.gradient_max_rel_error:.2e}'} "
            f"| {'—' if r.witness_gradient_error is None else f'{r.witness_gradient_error:.2e}'} "
            f"| {'yes' if r.ok else '**NO**'} |"
        )
    return "\n".join(lines) + "\n"


def run_with_progress(
    stage: str, work: Sequence[tuple[str, Callable[[], T]]], backends: Sequence[Backend] = ()
) -> list[T]:
    """Each job of ``work`` in order, a line on stderr as each starts: ``make compare`` runs for
    about a quarter of an hour. After each job, ``backends`` free the programs they compiled for it
    (:meth:`spec.backend.Backend.release_compiled`: one process compiles every zoo model)."""
    start, results = time.perf_counter(), []
    for index, (label, job) in enumerate(work, 1):
        elapsed = time.perf_counter() - start
        print(f"[{stage} {index}/{len(work)}, {elapsed:.0f} s] {label}", file=sys.stderr, flush=True)
        results.append(job())
        for backend in backends:
            backend.release_compiled()
    return results


@dataclass
class Results:
    """What one process computed for the report, for its backends (a worker's, pickled to its caller)."""

    header_backends: dict[str, str]  # backend → framework version and threads
    unavailable: dict[str, str]
    rows: list[Row]
    precision_rows: list[PrecisionRow]
    optimizer_rows: list[OptimizerRow]
    trained: list[tuple[ConvergenceRow, History | None]]
    worker_failed: bool = False  # a Keras backend's worker process failed: the report is not ok

    def joined(self, other: Results, models: Sequence[Case], recipes: Sequence[RecipeSpec]) -> Results:
        """Both processes' results, each table in the report's order: by model (optimizer, recipe), then backend."""
        order = {name: index for index, name in enumerate(BACKEND_NAMES)}
        cases = {case.spec.name: index for index, case in reversed(list(enumerate(models)))}
        optimizers = {name: index for index, name in enumerate(OPTIMIZER_ZOO)}
        recipe_order = {recipe.name: index for index, recipe in enumerate(recipes)}
        return Results(
            self.header_backends | other.header_backends,
            self.unavailable | other.unavailable,
            sorted([*self.rows, *other.rows], key=lambda r: (cases.get(r.model, -1), order[r.backend])),
            sorted(
                [*self.precision_rows, *other.precision_rows], key=lambda r: (cases.get(r.model, -1), order[r.backend])
            ),
            sorted(
                [*self.optimizer_rows, *other.optimizer_rows],
                key=lambda r: (optimizers.get(r.optimizer, -1), order[r.backend]),
            ),
            sorted([*self.trained, *other.trained], key=lambda t: (recipe_order[t[0].recipe], order[t[0].backend])),
            self.worker_failed or other.worker_failed,
        )


def run_jobs(names: Sequence[str], models: Sequence[Case], recipes: Sequence[RecipeSpec]) -> Results:
    """Every table's jobs on the backends ``names`` that load in this process."""
    found = available_backends(tuple(names))
    backends = [b for b in found.values() if not isinstance(b, BackendUnavailable)]
    unavailable = {n: str(b) for n, b in found.items() if isinstance(b, BackendUnavailable)}
    rows = run_with_progress(
        "models",
        [(f"{case.id} on {b.name}", functools.partial(compare_model, case, b)) for case in models for b in backends],
        backends,
    )
    precision_rows = run_with_progress(
        "precisions",
        [
            (f"{case.id} on {b.name}", functools.partial(compare_precision, case, b))
            for case in models
            for b in backends
        ],
        backends,
    )
    optimizer_rows = run_with_progress(
        "optimizers",
        [
            (f"{name} on {b.name}", functools.partial(compare_optimizer, name, opt, b))
            for name, opt in OPTIMIZER_ZOO.items()
            for b in backends
        ],
        backends,
    )
    trained = run_with_progress(
        "recipes",
        [(f"{r.name} on {b.name}", functools.partial(compare_recipe, r, b)) for r in recipes for b in backends],
        backends,
    )
    header = {b.name: f"{b.framework_version()}; intra-op threads: {b.threads()}" for b in backends}
    return Results(header, unavailable, rows, precision_rows, optimizer_rows, trained)


def in_own_process(name: str, argv: Sequence[str]) -> Results:
    """The report's jobs on Keras executor ``name``, run by a worker process whose Keras runs on that
    executor's backend (Keras fixes its backend once per process); its progress shows on stderr."""
    print(f"[{name}: Keras on {KERAS_ENGINES[name]}, in a process of its own]", file=sys.stderr, flush=True)
    own = [  # the caller's arguments, but its choice of backends
        arg
        for index, arg in enumerate(argv)
        if not arg.startswith("--backend") and (index == 0 or argv[index - 1] != "--backend")
    ]
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "results.pickle"
        env = os.environ | {KERAS_BACKEND_ENV: KERAS_ENGINES[name]}
        command = [sys.executable, "-m", "spec.report", *own, "--backend", name, "--results-to", str(out)]
        done = subprocess.run(command, env=env, check=False)
        if done.returncode != 0 or not out.exists():
            return Results({}, {name: f"its worker process failed (exit {done.returncode})"}, [], [], [], [], True)
        results: Results = pickle.loads(out.read_bytes())
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triptych-compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        action="append",
        choices=[*BACKEND_NAMES, "all"],
        default=[],
        help="backend(s) to run (repeatable; default: all installed)",
    )
    parser.add_argument(
        "--model",
        action="append",
        choices=sorted(ZOO),
        default=[],
        help="zoo model(s) to run (repeatable; default: all)",
    )
    parser.add_argument(
        "--spec-file",
        action="append",
        default=[],
        help="a user's spec: path/to/file.py (its SPEC, as triptych-port writes it) or file.py:NAME (repeatable; "
        "alone, it replaces the zoo in the model tables)",
    )
    parser.add_argument("--no-training", action="store_true", help="skip the convergence table (the slow part)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="directory for compare.md/.json")
    parser.add_argument(
        "--bench",
        type=Path,
        action="append",
        default=[],
        help=f"pytest-benchmark JSON for the speed section, repeatable (default: {DEFAULT_BENCH} and "
        f"{KERAS_BENCH.format(executor='keras-jax')}… beside it, where `make bench` wrote them)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"intra-op threads for every framework (sets {THREADS_ENV}; default: the frameworks' own)",
    )
    parser.add_argument("--results-to", type=Path, default=None, help=argparse.SUPPRESS)  # a worker's output
    args = parser.parse_args(argv)
    if args.threads is not None:
        os.environ[THREADS_ENV] = str(args.threads)  # read by each backend when it loads
    names = BACKEND_NAMES if not args.backend or "all" in args.backend else tuple(dict.fromkeys(args.backend))
    try:
        user_specs = [load_spec(reference) for reference in args.spec_file]
    except (PortError, SpecError) as exc:
        print(f"triptych-compare: {exc}", file=sys.stderr)
        return 2
    zoo = [] if user_specs and not args.model else args.model or list(ZOO)
    models = [replace(case, perturbed=False) for case in [*(ZOO_CASES[n] for n in zoo), *map(case_of, user_specs)]]
    recipes = [] if args.no_training else [*RECIPES.values(), *SEQUENCE_RECIPES.values(), *TRANSFORMER_RECIPES.values()]
    here = [name for name in names if name in process_backends()]
    results = run_jobs(here, models, recipes)
    if args.results_to is not None:  # a worker for its Keras backend: the caller writes the report
        args.results_to.write_bytes(pickle.dumps(results))
        return 0
    for name in names:
        if name not in here:
            results = results.joined(in_own_process(name, sys.argv[1:] if argv is None else argv), models, recipes)
    if not results.header_backends:
        print("no backend is available:\n" + "\n".join(results.unavailable.values()), file=sys.stderr)
        return 2
    header = {
        "machine": f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        **results.header_backends,
    }
    rows, precision_rows, optimizer_rows = results.rows, results.precision_rows, results.optimizer_rows
    unavailable = results.unavailable
    runs = {r.name: [run for run in results.trained if run[0].recipe == r.name] for r in recipes}
    convergence_rows = [row for recipe_runs in runs.values() for row, _ in recipe_runs]
    text = markdown(rows, header, unavailable) + precision_markdown(precision_rows) + optimizer_markdown(optimizer_rows)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / "compare.md", args.out / "compare.json"]
    if convergence_rows:
        text += convergence_markdown(convergence_rows)
        histories = {name: [h for _, h in recipe_runs if h is not None] for name, recipe_runs in runs.items()}
        written.append(plot_loss_curves(histories, args.out / LOSS_CURVES))
        generated = {name: [h for h in runs if h.samples is not None] for name, runs in histories.items()}
        generated = {name: runs for name, runs in generated.items() if runs}
        if generated:
            written.append(plot_gan_samples(generated, RING, args.out / GAN_SAMPLES))
    speed = load_speed(*bench_paths) if (bench_paths := args.bench or default_bench()) else None
    if speed is not None:
        text += speed_markdown(speed)
    else:
        text += "\n## Speed\n\nNo benchmark results: run `make bench`, then `make compare` again.\n"
    (args.out / "compare.md").write_text(text)
    payload = {
        "header": header,
        "unavailable": unavailable,
        "models": [asdict(r) | {"ok": r.ok} for r in rows],
        "precisions": [asdict(r) | {"ok": r.ok} for r in precision_rows],
        "optimizers": [asdict(r) | {"ok": r.ok} for r in optimizer_rows],
        "convergence": [asdict(r) | {"ok": r.ok} for r in convergence_rows],
        "speed": None if speed is None else asdict(speed),
        "loss_curves": {
            recipe: {history.backend: loss_curve(history) for _, history in recipe_runs if history is not None}
            for recipe, recipe_runs in runs.items()
        },
    }
    (args.out / "compare.json").write_text(json.dumps(payload, indent=2))
    if zoo:  # the site's pages of the zoo models this run compared, with these numbers
        site = build_site(args.out / SITE, payload, text, zoo, args.out)
        written.append(site[-1])
    print(text)
    print("written: " + ", ".join(str(p) for p in written))
    every_row: list[Row | PrecisionRow | OptimizerRow | ConvergenceRow] = [
        *rows, *precision_rows, *optimizer_rows, *convergence_rows,
    ]  # fmt: skip
    return 0 if all(r.ok for r in every_row) and not results.worker_failed else 1


if __name__ == "__main__":
    sys.exit(main())
