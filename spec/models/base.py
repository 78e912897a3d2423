"""The base of every model spec: the fields and checks all kinds share, and the hooks through which
the rest of triptych asks a spec what it needs (its inputs, losses, an example batch, its FLOPs,
the data its recipes can name, the steps one training batch makes) instead of asking which kind it is.

Exactly two places branch on the kind of a spec: its parameter layout (:mod:`spec.params`) and the
judge (:mod:`spec.reference`). Everything else a kind has — how it validates, what its inputs and
outputs look like, what batch exercises it — is a method or class attribute of its spec class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from spec.data import (
    DIGIT_PAIRS,
    DIGITS,
    DIGITS_RECONSTRUCTION,
    EVALUATION_STREAM,
    FIVE_DIGITS,
    Split,
    digit_targets,
    digit_task,
    digits,
    first_classes,
    jittered,
)
from spec.errors import SpecError
from spec.layers import BIAS_INITIALIZERS, KERNEL_INITIALIZERS, OUTPUT_ACTIVATIONS
from spec.losses import DEFAULT_LOSS
from spec.validation import check_number

# How a BatchNorm layer in a frozen part of the model behaves in training mode:
#   "inference"  normalise with its running statistics and leave them alone (Keras: a layer with
#                trainable=False runs in inference mode; the usual fine-tuning setup)
#   "training"   normalise with batch statistics and keep updating the running ones (torch: setting
#                requires_grad=False freezes γ and β only)
FROZEN_BATCHNORM = ("inference", "training")


@dataclass(frozen=True)
class ModelSpec:
    """What every model spec holds and checks. A spec is a frozen dataclass validated on construction:
    a bad field raises :class:`SpecError` naming the field and the allowed values.

    The shared fields are keyword-only: the initializers of the kernels and the biases, the L2 factor
    on the kernels (added to the training loss), and for transfer learning the canonical layers (or
    prefixes such as ``stage_0``) left out of training, with how BatchNorm layers among them behave in
    training (:data:`FROZEN_BATCHNORM`). That ``frozen`` names layers of the model is checked with the
    layout, by :func:`spec.params.param_specs`.

    Each kind declares ``kind`` (a label for reports), ``input_dtype``, ``own_losses`` (losses that
    need more than the logits; the first is its default), and defines ``input_shape``,
    ``output_shape``, ``output_activation``, :meth:`describe`, :meth:`forward_flops` and, unless the
    digits serve, :meth:`example_batch`.
    """

    name: str
    kernel_initializer: str = field(default="glorot_uniform", kw_only=True)
    bias_initializer: str = field(default="zeros", kw_only=True)
    kernel_l2: float = field(default=0.0, kw_only=True)
    frozen: tuple[str, ...] = field(default=(), kw_only=True)
    frozen_batchnorm: str = field(default="inference", kw_only=True)

    kind: ClassVar[str]
    input_dtype: ClassVar[str] = "float32"  # or "int32": token ids
    own_losses: ClassVar[tuple[str, ...]] = ()
    # Whether training ends by measuring the samples the model generates (a GAN's mode coverage).
    generates_samples: ClassVar[bool] = False

    if TYPE_CHECKING:  # fields or properties of each kind (not fields here: they would fix their order)

        @property
        def output_activation(self) -> str: ...

        @property
        def output_size(self) -> int: ...

        @property
        def input_shape(self) -> tuple[int, ...]: ...

    def __post_init__(self) -> None:
        check_name(self.name)
        check_initializers(self)
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise SpecError("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        check_number("kernel_l2", self.kernel_l2, low=0.0)
        if isinstance(self.frozen, str) or not all(isinstance(f, str) for f in self.frozen):
            raise SpecError("frozen", self.frozen, "a tuple of canonical layer names or prefixes")
        object.__setattr__(self, "frozen", tuple(self.frozen))
        if self.frozen_batchnorm not in FROZEN_BATCHNORM:
            raise SpecError("frozen_batchnorm", self.frozen_batchnorm, FROZEN_BATCHNORM)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One example's output (without the batch axis)."""
        raise NotImplementedError(type(self).__name__)

    @property
    def has_dropout(self) -> bool:
        return False

    @property
    def is_deep(self) -> bool:
        """Deep enough that float32 rounding through its normalisations needs the deep tolerances
        (:func:`spec.tolerances.forward_check`)."""
        return False

    def parts(self, kind: type[T]) -> list[T]:
        """Every value of type ``kind`` among the spec's fields, their tuples and nested specs (a GAN's
        networks, a CNN's layers, each activation), in field order: ``spec.parts(Activation)``."""
        return list(_parts(self, kind))

    @property
    def reconstructs_input(self) -> bool:
        """Whether the output has the input's shape (an autoencoder's reconstruction)."""
        return self.output_shape == tuple(self.input_shape)

    @property
    def default_loss(self) -> str:
        """The loss the model is trained with unless a recipe says otherwise: its kind's own, else
        the one for its output activation (:data:`spec.losses.DEFAULT_LOSS`)."""
        return self.own_losses[0] if self.own_losses else DEFAULT_LOSS[self.output_activation]

    def describe(self) -> str:
        """One line a person can read."""
        raise NotImplementedError(type(self).__name__)

    def forward_flops(self, batch: int) -> int:
        """Operations of one forward pass over ``batch`` examples."""
        raise NotImplementedError(type(self).__name__)

    def train_step_flops(self, batch: int) -> int:
        """Operations of one training step: the forward pass, and a backward pass of twice its cost
        (the gradient with respect to each layer's input and to its weights)."""
        return 3 * self.forward_flops(batch)

    def example_batch(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets (for :attr:`default_loss`) that exercise the model: here test digits (of
        its first classes, for a softmax over fewer than ten) shaped as its input with a little noise
        (exactly equal pixels would put activations exactly on ReLU kinks, see
        :func:`spec.data.jittered`), and their targets — the clean digits themselves for a model that
        reconstructs them. Kinds on other data override this."""
        split = digits(tuple(self.input_shape))
        if self.output_activation == "softmax" and self.output_size < 10:  # a classifier of fewer digits
            split = first_classes(split, self.output_size)
        images = split.x_test[:size]
        return jittered(images, seed=seed), self.targets_on_digits(images, split.y_test[:size])

    @property
    def recipe_tasks(self) -> tuple[str, ...]:
        """The data a recipe for the model can name: digit tasks (:data:`spec.data.DIGIT_TASKS`)
        here — the digits as their own targets for a model whose output has its input's shape, pairs
        of overlaid digits too for ten sigmoid outputs (multi-label), the first five classes for a
        five-way softmax, else the digits and their classes. Kinds on other data override this."""
        if self.reconstructs_input:
            return (DIGITS_RECONSTRUCTION,)
        if self.output_activation == "sigmoid" and self.output_size == 10:
            return (DIGITS, DIGIT_PAIRS)
        if self.output_activation == "softmax" and self.output_size == 5:
            return (FIVE_DIGITS,)
        return (DIGITS,)

    def task_split(self, task: str, seed: int) -> Split:
        """The train and test data of ``task`` (one of :attr:`recipe_tasks`), as the model reads it."""
        return digit_task(task, tuple(self.input_shape), seed)

    def model_inputs(self, examples: np.ndarray, seed: int, stream: int) -> np.ndarray:
        """What the model takes for ``examples``: the examples themselves, unless the kind draws
        something to go with them (a VAE's ε) from random ``stream`` of ``seed`` — a training step's
        number, or :data:`spec.data.EVALUATION_STREAM`."""
        return examples

    def training_steps(
        self, x: np.ndarray, y: np.ndarray, loss: str, seed: int, step: int
    ) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """The optimizer steps that one training batch (``x``, ``y``) makes, in order, each as its
        inputs, targets and loss: one step with ``loss``, unless the kind trains in turns (a GAN)."""
        return [(self.model_inputs(x, seed, step), y, loss)]

    def evaluation_batch(
        self, x: np.ndarray, y: np.ndarray, loss: str, seed: int
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """Inputs, targets and loss that measure the model on held-out examples (``x``, ``y``) for a
        recipe trained with ``loss``."""
        return self.model_inputs(x, seed, EVALUATION_STREAM), y, loss

    def latents(self, count: int, seed: int, stream: int) -> np.ndarray:
        """``count`` latent codes from random ``stream`` of ``seed``, for a model that generates
        samples from them (:attr:`generates_samples`)."""
        raise SpecError("model", self.name, "a model that generates samples from latent codes")

    def targets_on_digits(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Targets on digit ``images`` for the default loss: the images themselves for a model
        reconstructing its input (an autoencoder), else those of the labels (:func:`spec.data.digit_targets`)."""
        if self.reconstructs_input and self.output_activation == "sigmoid":
            return images
        return digit_targets(labels, self.output_activation, self.output_size)


def check_name(name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError("name", name, "a Python identifier such as 'mnist_mlp'")


def check_initializers(spec: ModelSpec) -> None:
    if spec.kernel_initializer not in KERNEL_INITIALIZERS:
        raise SpecError("kernel_initializer", spec.kernel_initializer, KERNEL_INITIALIZERS)
    if spec.bias_initializer not in BIAS_INITIALIZERS:
        raise SpecError("bias_initializer", spec.bias_initializer, BIAS_INITIALIZERS)


def check_sequence(field_name: str, value: object, what: str) -> tuple:
    """``value`` as a tuple, or :class:`SpecError` when it is a string or not a sequence."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise SpecError(field_name, value, what)
    return tuple(value)


def is_within(layer: str, entry: str) -> bool:
    """Whether canonical ``layer`` is ``entry`` or lies under it (``stage_0`` holds ``stage_0/block_1/conv_a``)."""
    return layer == entry or layer.startswith(entry + "/")


def is_frozen(spec: ModelSpec, layer: str) -> bool:
    """Whether the spec leaves canonical ``layer`` out of training."""
    return any(is_within(layer, entry) for entry in spec.frozen)


T = TypeVar("T")


def _parts(value: object, kind: type[T]) -> Iterator[T]:
    if isinstance(value, kind):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _parts(item, kind)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for each in dataclasses.fields(value):
            yield from _parts(getattr(value, each.name), kind)
