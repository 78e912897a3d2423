"""The framework-neutral training loop: batches, metrics, early stopping and divergence checks.

Each step is the backend's own train step with its native optimizer — compiled or eager as the
framework's own training loop runs it (:attr:`spec.backend.Backend.trains_compiled`), unless told;
only the batch order and the bookkeeping live here, so that every backend sees identical batches and is measured by
identical (float64) metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from spec import reference as ref
from spec.backend import Backend, NativeModel
from spec.data import EVALUATION_STREAM, Split, batch_indices, stratified_split
from spec.data.mixture import RING, ModeCoverage, class_coverage, mode_coverage
from spec.errors import SpecError, TrainingDiverged, UnsupportedOption
from spec.optimizers import OptimizerSpec
from spec.params import init_params
from spec.recipes import GAUSSIAN_RING, RecipeSpec


@dataclass
class History:
    backend: str
    recipe: str
    compiled: bool  # whether every step and evaluation pass ran through the framework's compiler
    step_loss: list[float] = field(default_factory=list)  # training loss of every step, before its update
    step_learning_rate: list[float] = field(default_factory=list)  # the spec's rate (backends: test_schedules)
    epoch_val_loss: list[float] = field(default_factory=list)
    epoch_test_accuracy: list[float] = field(default_factory=list)  # NaN for a regression
    epoch_test_loss: list[float] = field(default_factory=list)
    stopped_epoch: int | None = None  # the epoch early stopping ended (1-based), if it did
    best_epoch: int | None = None  # the epoch whose weights were restored (1-based), if any
    final_params: dict[str, np.ndarray] = field(default_factory=dict)
    # optimizer field -> (the spec's value, the backend's native value), for a recipe's native_substitutes
    substitutions: dict[str, tuple[object, object]] = field(default_factory=dict)

    final_test_accuracy: float = math.nan  # of the final weights (the best epoch's, when restored)
    final_test_loss: float = math.nan  # the recipe's loss on the test set (float64), final weights
    # a GAN's: the generator loss of every step (step_loss holds the discriminator's), and how its
    # final samples cover the mixture
    step_generator_loss: list[float] = field(default_factory=list)
    coverage: ModeCoverage | None = None
    samples: np.ndarray | None = None  # the generated points the coverage was measured on

    def steps_to(self, accuracy: float) -> int | None:
        """Steps taken by the end of the first epoch whose test accuracy reached ``accuracy``."""
        steps_per_epoch = len(self.step_loss) // max(len(self.epoch_test_accuracy), 1)
        for epoch, acc in enumerate(self.epoch_test_accuracy, start=1):
            if acc >= accuracy:
                return epoch * steps_per_epoch
        return None

    def steps_to_loss(self, loss: float) -> int | None:
        """Steps taken by the end of the first epoch whose test loss got to ``loss`` or below."""
        steps_per_epoch = len(self.step_loss) // max(len(self.epoch_test_loss), 1)
        for epoch, value in enumerate(self.epoch_test_loss, start=1):
            if value <= loss:
                return epoch * steps_per_epoch
        return None


def accuracy(
    backend: Backend, model: NativeModel, x: np.ndarray, labels: np.ndarray, loss: str, *, compiled: bool = False
) -> float:
    """The share of correct predictions: the arg-max class for class ids and one-hot targets, the
    side of 0.5 for binary targets (every step's, for per-step heads); NaN for a regression."""
    if loss not in ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy"):
        return math.nan
    logits = backend.logits(model, x, compiled=compiled)
    match loss:
        case "sparse_categorical_crossentropy":
            return float((logits.argmax(axis=-1) == labels).mean())
        case "categorical_crossentropy":
            return float((logits.argmax(axis=-1) == np.asarray(labels).argmax(axis=-1)).mean())
        case "binary_crossentropy":
            return float(((logits > 0) == (np.asarray(labels) > 0.5)).mean())
    return math.nan


def evaluation_loss(
    backend: Backend, model: NativeModel, recipe: RecipeSpec, x: np.ndarray, y: np.ndarray, *, compiled: bool = False
) -> float:
    """The recipe's loss (without the L2 term) of the model on held-out examples, in float64, as
    the spec measures them (:meth:`~spec.models.ModelSpec.evaluation_batch`). A loss of the model's
    own kind needs more than the logits (a VAE's the encoder's outputs, a GAN's both networks): it is
    the judge's, on the backend's weights."""
    spec = recipe.model
    inputs, targets, loss = spec.evaluation_batch(x, y, recipe.loss, recipe.seed)
    if loss in spec.own_losses:
        return ref.loss(spec, backend.export_params(model), inputs, targets, loss)
    logits = backend.logits(model, inputs, compiled=compiled)
    return ref.loss_from_logits(loss, logits, targets, spec.output_activation)


def fit(backend: Backend, recipe: RecipeSpec, split: Split, *, compiled: bool | None = None) -> History:
    """Train ``recipe`` on ``backend`` from the canonical init, each step and evaluation pass compiled
    or eager as ``compiled`` says (``None``: as the framework's own training loop,
    :attr:`~spec.backend.Backend.trains_compiled`); raises :class:`TrainingDiverged` naming the
    step when the loss stops being finite."""
    compiled = backend.trains_compiled if compiled is None else compiled
    x, y = split.x_train, split.y_train
    x_val = y_val = None
    if recipe.validation_fraction:
        train_idx, val_idx = stratified_split(y, recipe.validation_fraction, recipe.seed)
        x, y, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    schedule = recipe.optimizer.schedule
    steps = recipe.epochs * math.ceil(len(x) / recipe.batch_size)
    if schedule is not None and schedule.total_steps < steps:
        raise SpecError(
            "schedule.total_steps",
            schedule.total_steps,
            f"at least the recipe's {steps} steps "
            f"({recipe.epochs} epochs of {len(x)} examples in batches of {recipe.batch_size})",
        )
    params = init_params(recipe.model, recipe.seed)
    model = backend.build(recipe.model, params, seed=recipe.seed)
    history = History(backend.name, recipe.name, compiled)
    optimizer, history.substitutions = make_optimizer_substituting(
        backend, model, recipe.optimizer, recipe.native_substitutes
    )
    best_loss, best_params, waited = math.inf, None, 0
    for epoch in range(recipe.epochs):
        for batch in batch_indices(len(x), recipe.batch_size, seed=recipe.seed, epoch=epoch):
            step = len(history.step_loss)
            rate = ref.learning_rate(schedule, step) if schedule is not None else recipe.optimizer.constant_rate
            x_batch = x[batch]
            if recipe.augmentation is not None:
                x_batch = recipe.augmentation(x_batch, recipe.seed, epoch, step)
            loss, *later = (
                backend.train_step(model, optimizer, inputs, targets, step_loss, compiled=compiled)
                for inputs, targets, step_loss in recipe.model.training_steps(
                    x_batch, y[batch], recipe.loss, recipe.seed, step
                )
            )
            if later:  # a GAN's generator step, after its discriminator's
                history.step_generator_loss.append(later[0])
                loss = loss if math.isfinite(later[0]) else later[0]
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"{backend.name}: recipe {recipe.name!r} diverged at step {step} (epoch {epoch + 1}): "
                    f"loss is {loss}; learning rate {rate:g}"
                )
            history.step_loss.append(loss)
            history.step_learning_rate.append(rate)
        history.epoch_test_accuracy.append(
            accuracy(backend, model, split.x_test, split.y_test, recipe.loss, compiled=compiled)
        )
        history.epoch_test_loss.append(
            evaluation_loss(backend, model, recipe, split.x_test, split.y_test, compiled=compiled)
        )
        if recipe.early_stopping is None:
            continue
        assert x_val is not None and y_val is not None  # RecipeSpec requires a validation split with early stopping
        val_loss = evaluation_loss(backend, model, recipe, x_val, y_val, compiled=compiled)
        history.epoch_val_loss.append(val_loss)
        if val_loss < best_loss - recipe.early_stopping.min_delta:
            best_loss, waited = val_loss, 0
            best_params, history.best_epoch = backend.export_params(model), epoch + 1
        else:
            waited += 1
            if waited >= recipe.early_stopping.patience:
                history.stopped_epoch = epoch + 1
                break
    if recipe.early_stopping is not None and recipe.early_stopping.restore_best and best_params is not None:
        backend.load_params(model, best_params)
    history.final_params = backend.export_params(model)
    history.final_test_accuracy = accuracy(backend, model, split.x_test, split.y_test, recipe.loss, compiled=compiled)
    history.final_test_loss = evaluation_loss(backend, model, recipe, split.x_test, split.y_test, compiled=compiled)
    if recipe.model.generates_samples:
        history.samples = generated_samples(backend, model, recipe)
        ring = recipe.data == GAUSSIAN_RING
        history.coverage = mode_coverage(history.samples, RING) if ring else class_coverage(history.samples, split)
    return history


# A GAN's samples for the coverage metric: one fixed draw of z.
COVERAGE_SAMPLES = 2048


def generated_samples(backend: Backend, model: NativeModel, recipe: RecipeSpec) -> np.ndarray:
    """The generator's samples for :data:`COVERAGE_SAMPLES` latents drawn from the evaluation stream."""
    return backend.forward(model, recipe.model.latents(COVERAGE_SAMPLES, recipe.seed, EVALUATION_STREAM))


def make_optimizer_substituting(
    backend: Backend, model: NativeModel, opt: OptimizerSpec, substitutable: tuple[str, ...]
) -> tuple[object, dict[str, tuple[object, object]]]:
    """The backend's optimizer for ``opt``, with the native value of each ``substitutable`` option the
    framework cannot express; returns it and the substitutions made (field -> (spec value, native))."""
    substitutions: dict[str, tuple[object, object]] = {}
    while True:
        try:
            return backend.make_optimizer(model, opt), substitutions
        except UnsupportedOption as unsupported:
            name = unsupported.field.removeprefix("optimizer.")
            if name not in substitutable or unsupported.native is None or name in substitutions:
                raise
            substitutions[name] = (getattr(opt, name), unsupported.native)
            native: dict[str, Any] = {name: unsupported.native}  # which field is known only at run time
            opt = replace(opt, **native)
