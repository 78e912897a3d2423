"""Training recipes: what to train, with which optimizer and loss, on which batches, until when.

A recipe is framework-neutral: :func:`spec.training.fit` runs it on any backend with that backend's
native compiled train step and optimizer, over batches drawn from the recipe's seed, so every backend
sees the same examples in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec.errors import SpecError
from spec.losses import check_loss
from spec.models import MLPSpec, ModelSpec
from spec.optimizers import OptimizerSpec
from spec.schedules import ScheduleSpec
from spec.validation import check_number, check_positive_int


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when the validation loss has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best``, end with the weights of the best epoch."""

    patience: int
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        check_positive_int("early_stopping.patience", self.patience)
        check_number("early_stopping.min_delta", self.min_delta, low=0.0)


@dataclass(frozen=True)
class RecipeSpec:
    name: str
    model: ModelSpec
    optimizer: OptimizerSpec
    loss: str
    batch_size: int
    epochs: int
    seed: int = 0  # the canonical init and the batch order
    target_accuracy: float | None = None  # the test accuracy the recipe is expected to reach
    early_stopping: EarlyStopping | None = None
    validation_fraction: float = 0.0  # carved from the training set, stratified; needed by early stopping

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise SpecError("recipe.name", self.name, "a Python identifier")
        check_loss(self.loss, self.model.output_activation)
        check_positive_int("recipe.batch_size", self.batch_size)
        check_positive_int("recipe.epochs", self.epochs)
        if self.target_accuracy is not None:
            check_number("recipe.target_accuracy", self.target_accuracy, low=0.0, high=1.0 + 1e-12)
        if self.early_stopping is not None and self.validation_fraction == 0.0:
            raise SpecError("recipe.validation_fraction", 0.0, "a fraction in (0, 1) when early_stopping is set")
        if self.validation_fraction:
            check_number("recipe.validation_fraction", self.validation_fraction, low=0.0, high=1.0, low_open=True)


def digits_mlp(hidden: tuple[int, ...], name: str) -> MLPSpec:
    return MLPSpec(name, 64, hidden, 10, ("relu",) * len(hidden), "softmax")


_ADAM = dict(beta1=0.9, beta2=0.999, epsilon=1e-8, epsilon_placement="corrected")

DIGITS_EPOCHS = 35
DIGITS_STEPS = DIGITS_EPOCHS * 12  # 1,437 training images: 12 batches of 128 per epoch

# The classic recipes, on the embedded digits.
RECIPES: dict[str, RecipeSpec] = {
    r.name: r
    for r in (
        # The classic Dense 512 relu → Dense 10 softmax net with Adam (Kingma & Ba's defaults).
        RecipeSpec(
            "digits_adam",
            digits_mlp((512,), "digits_512"),
            OptimizerSpec("adam", 1e-3, **_ADAM),
            "sparse_categorical_crossentropy",
            batch_size=128,
            epochs=DIGITS_EPOCHS,
            target_accuracy=0.95,
        ),
        # Adam with a linear warm-up (2 epochs) and cosine decay over the rest of the run.
        RecipeSpec(
            "digits_adam_cosine",
            digits_mlp((512,), "digits_512"),
            OptimizerSpec(
                "adam",
                ScheduleSpec("warmup_cosine", 3e-3, DIGITS_STEPS, floor=1e-5, warmup_steps=24, warmup_start=3e-4),
                **_ADAM,
            ),
            "sparse_categorical_crossentropy",
            batch_size=128,
            epochs=DIGITS_EPOCHS,
            target_accuracy=0.95,
        ),
        # SGD with heavy-ball momentum.
        RecipeSpec(
            "digits_sgd_momentum",
            digits_mlp((512,), "digits_512"),
            OptimizerSpec("sgd", 0.05, momentum=0.9),
            "sparse_categorical_crossentropy",
            batch_size=128,
            epochs=DIGITS_EPOCHS,
            target_accuracy=0.95,
        ),
    )
}
