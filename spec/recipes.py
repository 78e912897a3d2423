"""Training recipes: what to train, with which optimizer and loss, on which batches, until when.

A recipe is framework-neutral: :func:`spec.training.fit` runs it on any backend with that backend's
native train step and optimizer, over batches drawn from the recipe's seed, so every backend
sees the same examples in the same order.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypedDict

from spec.data import DIGIT_PAIRS, DIGITS_RECONSTRUCTION, FIVE_DIGITS, Split
from spec.data.augment import Augmentation
from spec.data.mixture import GAUSSIAN_RING
from spec.data.sequences import SEQUENCE_TRAIN
from spec.errors import SpecError
from spec.losses import check_model_loss
from spec.models import (
    SEQUENCE_ZOO,
    TRANSFORMER_ZOO,
    ZOO,
    MLPSpec,
    ModelSpec,
)
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


# Options whose native replacement changes the numbers but not what is being trained.
SUBSTITUTABLE = ("epsilon_placement",)


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
    target_loss: float | None = None  # the test loss (float64, without L2) it is expected to get below
    target_modes: int | None = None  # a GAN's: the modes of the mixture its samples are expected to cover
    data: str = "digits"  # the embedded digits, or a synthetic task of spec.data.sequences.SEQUENCE_TASKS
    early_stopping: EarlyStopping | None = None
    validation_fraction: float = 0.0  # carved from the training set, stratified; needed by early stopping
    augmentation: Augmentation | None = None  # applied to each training batch, seeded by (seed, epoch, step)
    # Optimizer fields a backend may replace by what its native optimizer computes when it cannot
    # express the spec's value. Such a recipe is judged by convergence only (its trajectories differ
    # by construction); fit records every replacement in the history, and the report shows it.
    native_substitutes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise SpecError("recipe.name", self.name, "a Python identifier")
        check_model_loss(self.model, self.loss)
        check_positive_int("recipe.batch_size", self.batch_size)
        check_positive_int("recipe.epochs", self.epochs)
        if self.target_accuracy is not None:
            check_number("recipe.target_accuracy", self.target_accuracy, low=0.0, high=1.0 + 1e-12)
        if self.early_stopping is not None and self.model.own_losses:
            raise SpecError("recipe.early_stopping", self.early_stopping, f"None with the {self.loss!r} loss")
        if self.early_stopping is not None and self.validation_fraction == 0.0:
            raise SpecError("recipe.validation_fraction", 0.0, "a fraction in (0, 1) when early_stopping is set")
        if self.validation_fraction:
            check_number("recipe.validation_fraction", self.validation_fraction, low=0.0, high=1.0, low_open=True)
        if self.augmentation is not None and math.prod(self.augmentation.image_shape) != math.prod(
            self.model.input_shape
        ):
            raise SpecError(
                "recipe.augmentation.image_shape",
                self.augmentation.image_shape,
                f"a shape of {math.prod(self.model.input_shape)} values, the model's input {self.model.input_shape}",
            )
        for name in self.native_substitutes:
            if name not in SUBSTITUTABLE:
                raise SpecError("recipe.native_substitutes", name, SUBSTITUTABLE)
        if self.target_loss is not None:
            check_number("recipe.target_loss", self.target_loss, low=0.0, low_open=True)
        if self.target_modes is not None and not self.model.generates_samples:
            raise SpecError("recipe.target_modes", self.target_modes, "None for a model that does not generate samples")
        allowed = data_for(self.model)
        if self.data not in allowed:
            raise SpecError("recipe.data", self.data, allowed)


def data_for(model: ModelSpec) -> tuple[str, ...]:
    """The data a recipe for ``model`` can name (:attr:`spec.models.ModelSpec.recipe_tasks`)."""
    return model.recipe_tasks


def recipe_split(recipe: RecipeSpec) -> Split:
    """The data ``recipe`` trains and is tested on, as its model reads it."""
    return recipe.model.task_split(recipe.data, recipe.seed)


def digits_mlp(hidden: tuple[int, ...], name: str, *, dropout: float = 0.0, kernel_l2: float = 0.0) -> MLPSpec:
    return MLPSpec(name, 64, hidden, 10, ("relu",) * len(hidden), "softmax", dropout=dropout, kernel_l2=kernel_l2)


class AdamOptions(TypedDict):
    beta1: float
    beta2: float
    epsilon: float
    epsilon_placement: str


_ADAM: AdamOptions = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "epsilon_placement": "corrected"}
_GAN_ADAM: AdamOptions = {**_ADAM, "beta1": 0.5}  # Radford et al.'s DCGAN setting: less momentum for the adversaries

DIGITS_EPOCHS = 35
DIGITS_TARGET = 0.95
DIGITS_STEPS = DIGITS_EPOCHS * 12  # 1,437 training images: 12 batches of 128 per epoch
RESNET_EPOCHS = 12
RESNET_STEPS = RESNET_EPOCHS * 23  # 23 batches of 64 per epoch


def _reconstruction_recipe(name: str, model: ModelSpec, target_loss: float) -> RecipeSpec:
    """An autoencoder's recipe: MSE between its sigmoid pixels and the digits themselves, Adam at
    1e-2, 40 epochs of batches of 128."""
    optimizer = OptimizerSpec("adam", 1e-2, **_ADAM)
    return RecipeSpec(
        name, model, optimizer, "mse", batch_size=128, epochs=40, target_loss=target_loss, data=DIGITS_RECONSTRUCTION
    )


def _gan_recipe(
    name: str, model: ModelSpec, learning_rate: float, *, batch_size: int, epochs: int, modes: int, data: str = "digits"
) -> RecipeSpec:
    """A GAN's recipe: Adam with β1 0.5 for both networks (:data:`_GAN_ADAM`), a discriminator step
    then a generator step per batch, judged by the modes its samples cover."""
    optimizer = OptimizerSpec("adam", learning_rate, **_GAN_ADAM)
    return RecipeSpec(
        name, model, optimizer, "gan_discriminator", batch_size=batch_size, epochs=epochs, target_modes=modes, data=data
    )


def digits_recipe(name: str, model: MLPSpec, optimizer: OptimizerSpec, **options: Any) -> RecipeSpec:
    """A recipe on the embedded digits with what the classic ones share: cross-entropy on class ids,
    batches of 128, DIGITS_EPOCHS epochs, a 95% test-accuracy target."""
    return RecipeSpec(
        name,
        model,
        optimizer,
        "sparse_categorical_crossentropy",
        batch_size=128,
        epochs=DIGITS_EPOCHS,
        target_accuracy=DIGITS_TARGET,
        **options,  # RecipeSpec's own fields, which it checks
    )


# The classic recipes, on the embedded digits.
RECIPES: dict[str, RecipeSpec] = {
    r.name: r
    for r in (
        # The classic Dense 512 relu → Dense 10 softmax net with Adam (Kingma & Ba's defaults).
        digits_recipe(
            "digits_adam",
            digits_mlp((512,), "digits_512"),
            OptimizerSpec("adam", 1e-3, **_ADAM),
        ),
        # Adam with a linear warm-up (2 epochs) and cosine decay over the rest of the run.
        digits_recipe(
            "digits_adam_cosine",
            digits_mlp((512,), "digits_512"),
            OptimizerSpec(
                "adam",
                ScheduleSpec("warmup_cosine", 3e-3, DIGITS_STEPS, floor=1e-5, warmup_steps=24, warmup_start=3e-4),
                **_ADAM,
            ),
        ),
        # The classic MNIST recipe (Chollet, "Deep Learning with Python", ch. 2): Dense 512 relu →
        # Dense 10 softmax, RMSprop at 1e-3 with Keras's defaults (ρ 0.9, ε 1e-7 inside the square
        # root). torch.optim.RMSprop puts ε outside the root; the recipe lets it, and says so. Plain
        # RMSprop at a constant rate keeps jumping (test accuracy swings between 94% and 97% from
        # epoch to epoch on this small set), so the recipe keeps the weights of the best validation
        # loss, as Keras's EarlyStopping(restore_best_weights=True) does.
        digits_recipe(
            "digits_rmsprop",
            digits_mlp((512,), "digits_512"),
            OptimizerSpec("rmsprop", 1e-3, rho=0.9, epsilon=1e-7, epsilon_placement="inside_sqrt"),
            early_stopping=EarlyStopping(patience=8),
            validation_fraction=0.1,
            native_substitutes=("epsilon_placement",),
        ),
        # Regularised: dropout after the hidden layer and L2 on the kernels, in the loss.
        digits_recipe(
            "digits_adam_regularised",
            digits_mlp((512,), "digits_512_regularised", dropout=0.2, kernel_l2=1e-4),
            OptimizerSpec("adam", 1e-3, **_ADAM),
        ),
        # SGD with heavy-ball momentum.
        digits_recipe(
            "digits_sgd_momentum",
            digits_mlp((512,), "digits_512"),
            OptimizerSpec("sgd", 0.05, momentum=0.9),
        ),
        # The small digits CNN with Adam: ≥ 97% on the 8×8 digits.
        RecipeSpec(
            "digits_cnn_adam",
            ZOO["digits_cnn"],
            OptimizerSpec("adam", 1e-3, **_ADAM),
            "sparse_categorical_crossentropy",
            batch_size=64,
            epochs=20,
            target_accuracy=0.97,
        ),
        # The Keras multi-label MLP (784-128-10, ten sigmoid outputs) with plain SGD at 0.1 and binary
        # cross-entropy, on two digits overlaid per image (both classes as targets): the test loss ends
        # at 0.224 on every backend (91% of the labels right), predicting each label's prior costs 0.500.
        RecipeSpec(
            "mnist_mlp_multilabel_sgd",
            ZOO["mnist_mlp_multilabel"],
            OptimizerSpec("sgd", 0.1, momentum=0.0),
            "binary_crossentropy",
            batch_size=32,
            epochs=30,
            target_loss=0.25,
            data=DIGIT_PAIRS,
        ),
        # ResNet-50 fine-tuned the texts' way: its backbone frozen (BatchNorms in inference mode), a new
        # 5-class head trained with Adam, on the digits 0–4 upsampled to 32×32. No pretrained weights
        # can ship here, so the backbone is the canonical init and the head a linear probe of its
        # random features: 44% test accuracy after 12 epochs (chance: 20%), the same to three decimals
        # on every backend at every epoch — what it shows is that the three fine-tune alike.
        RecipeSpec(
            "resnet50_finetune_adam",
            ZOO["resnet50_finetune"],
            OptimizerSpec("adam", 1e-4, **_ADAM),
            "sparse_categorical_crossentropy",
            batch_size=64,
            epochs=12,
            target_accuracy=0.4,
            data=FIVE_DIGITS,
        ),
        # The narrow ResNet-18 (CIFAR stem) on digits upsampled to 32×32 with the CIFAR augmentation
        # (random crops after 4 pixels of padding; no flips, which would turn digits into other
        # shapes): 276 steps of Adam with cosine decay.
        RecipeSpec(
            "resnet18_narrow_augmented",
            ZOO["resnet18_narrow"],
            OptimizerSpec("adam", ScheduleSpec("cosine", 3e-3, RESNET_STEPS, floor=0.0), **_ADAM),
            "sparse_categorical_crossentropy",
            batch_size=64,
            epochs=RESNET_EPOCHS,
            target_accuracy=0.95,
            augmentation=Augmentation((32, 32, 1), crop_padding=4),
        ),
        # A dense autoencoder reconstructing the digits (MSE on sigmoid pixels), Adam at 1e-2: the test
        # reconstruction error ends near 0.023, a third of predicting the mean image (0.074).
        _reconstruction_recipe("digits_autoencoder_mse", ZOO["digits_autoencoder"], target_loss=0.03),
        # The convolutional autoencoder on the same task and budget: its test reconstruction error ends
        # near 0.016 on every backend (its code holds 32 numbers to the dense one's 8).
        _reconstruction_recipe("digits_conv_autoencoder_mse", ZOO["digits_conv_autoencoder"], target_loss=0.025),
        # The classic VAE on the digits upsampled to 28×28, Adam at 1e-3: the test negative ELBO
        # (nats per image) ends near 177 on every backend; reconstructing every image as the mean
        # training image costs 244 in reconstruction alone.
        RecipeSpec(
            "mnist_vae_digits",
            ZOO["mnist_vae"],
            OptimizerSpec("adam", 1e-3, **_ADAM),
            "negative_elbo",
            batch_size=128,
            epochs=30,
            target_loss=185.0,
            data=DIGITS_RECONSTRUCTION,
        ),
        # The MLP GAN on the ring of 8 Gaussians: Adam at 1e-3 with β1 0.5 (Radford et al.'s DCGAN
        # setting) for both networks, a discriminator step then a generator step per batch (3,200
        # of each). Every backend covers all 8 modes, 79–89% of its samples within 3σ of one, the
        # sparsest mode with 140 of 2,048 samples (64 needed); at 40 epochs one backend covered 6.
        _gan_recipe("ring_gan_adam", ZOO["ring_gan"], 1e-3, batch_size=128, epochs=100, modes=8, data=GAUSSIAN_RING),
        # The MLP GAN drawing 8×8 digits: Adam at 2e-3 with β1 0.5, batches of 64, 4,600 iterations.
        # Every backend draws all 10 digit classes (spec.data.mixture.class_coverage: 63–77% of the
        # samples as close to a training digit as real test digits are, the rarest class with 74–107
        # of 2,048 samples, 52 needed); at 100 epochs and half the width it drew 6 or 9.
        _gan_recipe("digits_gan_adam", ZOO["digits_gan"], 2e-3, batch_size=64, epochs=200, modes=10),
        # The DCGAN-style GAN on the same digits: Adam at 1e-3 with β1 0.5, 2,300 iterations. Every
        # backend draws all 10 classes (54–61% of samples like real digits, the rarest class with
        # 67–91 of 2,048); at Radford et al.'s 2e-4 it had drawn one class well after 100 epochs.
        _gan_recipe("digits_dcgan_adam", ZOO["digits_dcgan"], 1e-3, batch_size=64, epochs=100, modes=10),
    )
}


SEQUENCE_BATCH = 64


def sequence_recipe(
    model: str | ModelSpec, data: str, epochs: int, learning_rate: float = 1e-2, **options: Any
) -> RecipeSpec:
    """Adam (Kingma & Ba's defaults) with cosine decay to 0, batches of 64 of a 2,048-sequence task;
    ``model`` a spec, or the name of one in the sequence or Transformer zoo."""
    spec = (SEQUENCE_ZOO | TRANSFORMER_ZOO)[model] if isinstance(model, str) else model
    model = spec.name
    steps_per_epoch = math.ceil(SEQUENCE_TRAIN / SEQUENCE_BATCH)
    schedule = ScheduleSpec("cosine", learning_rate, epochs * steps_per_epoch, floor=0.0)
    return RecipeSpec(
        f"{model}_{data}",
        spec,
        OptimizerSpec("adam", schedule, **_ADAM),
        spec.default_loss,
        batch_size=SEQUENCE_BATCH,
        epochs=epochs,
        data=data,
        **options,  # RecipeSpec's own fields, which it checks
    )


# Each sequence model on its synthetic task, with the target it reaches on every backend.
SEQUENCE_RECIPES: dict[str, RecipeSpec] = {
    r.name: r
    for r in (
        # 100 tanh steps amplify rounding: at 3e-3 the backends' runs part within two epochs
        # (accuracies 95–97%); at 5e-4 they stay within half a point of each other
        # Trained with 32 units, not the zoo's (the text's) 50: with 50 at 5e-4 the runs parted in CI
        # (torch 94.9% vs Keras 98.8% test accuracy, two pytest-xdist workers; alone they agreed),
        # while 32 units stayed within the 1.5 points. A recipe for the 50-unit net is still to find.
        sequence_recipe(
            dataclasses.replace(SEQUENCE_ZOO["simple_rnn_classifier"], name="simple_rnn_32", hidden_size=32),
            "drift_sign",
            8,
            5e-4,
            target_accuracy=0.95,
        ),
        sequence_recipe("lstm_forecaster", "sine_forecast", 4, target_loss=0.01),
        sequence_recipe("gru_forecaster", "sine_forecast", 4, target_loss=0.01),
        # attention pooling over the steps learns slower than reading the last one: 8 epochs (test MSE
        # 0.0058 on torch; 0.066 after 4)
        sequence_recipe("lstm_attention_forecaster", "sine_forecast", 8, target_loss=0.01),
        # the adding problem's plateau at the baseline (1/6) lasts ~200 steps, then the loss drops
        sequence_recipe("gru_reset_before", "adding_problem", 16, target_loss=0.05),
        sequence_recipe("bilstm_tagger", "running_sign", 6, target_accuracy=0.95),
        sequence_recipe("bigru_classifier", "running_sign_last", 4, target_accuracy=0.95),
    )
}


# Each Transformer on its token task.
TRANSFORMER_RECIPES: dict[str, RecipeSpec] = {
    r.name: r
    for r in (
        sequence_recipe("transformer_classifier", "majority", 8, 3e-3, target_accuracy=0.97),
        # finding duplicates needs attention to learn to match tokens: a plateau at the baseline
        # (predicting "unique" everywhere, 73%) for about two epochs
        sequence_recipe("transformer_tagger", "duplicates", 12, 1e-2, target_accuracy=0.95),
    )
}
