"""Generative models: the variational autoencoder and GANs of MLPs or CNNs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from spec.data import (
    DIGITS,
    DIGITS_RECONSTRUCTION,
    EVALUATION_STREAM,
    Split,
    digit_task,
    digits,
    latent_noise,
    vae_batch,
    vae_inputs,
)
from spec.data.mixture import GAUSSIAN_RING, RING
from spec.errors import SpecError
from spec.layers import Activation, BatchNorm, Dropout
from spec.models.base import ModelSpec
from spec.models.dense import MLPSpec
from spec.models.vision import CNNSpec
from spec.validation import check_number, check_positive_int

# How a VAE scores its reconstruction (summed over the pixels of each example, see spec.losses).
RECONSTRUCTIONS = ("binary_crossentropy", "mse")


@dataclass(frozen=True)
class VAESpec(ModelSpec):
    """A variational autoencoder (Kingma & Welling) on flattened images in [0, 1].

    Encoder: Dense ``hidden_size`` (``activation``) → Dense 2·``latent_size``, whose outputs are the
    mean (first ``latent_size`` columns) and the log-variance (the rest) of q(z|x). The sample is
    z = mean + exp(½·log_variance)·ε. Decoder: Dense ``hidden_size`` (``activation``) → Dense
    ``input_size`` with a sigmoid. ε is an input, not drawn inside the model, so that every backend
    and the judge see the same noise: the model's input is each image with its ε beside it,
    shape (batch, input_size + latent_size) (:func:`spec.data.vae_inputs`). Its logits are the
    decoder's, before the sigmoid. Its loss is the negative ELBO, ``negative_elbo`` in
    :mod:`spec.losses`: ``reconstruction`` summed over the pixels plus ``kl_weight`` times the KL
    divergence from N(0, I), averaged over the batch.
    """

    input_size: int = 784
    hidden_size: int = 256
    latent_size: int = 10
    activation: Activation | str = "relu"
    reconstruction: str = "binary_crossentropy"
    kl_weight: float = 1.0
    output_activation: str = field(default="sigmoid", init=False)
    kernel_l2: float = field(default=0.0, init=False)
    frozen: tuple[str, ...] = field(default=(), init=False)
    frozen_batchnorm: str = field(default="inference", init=False)

    kind: ClassVar[str] = "vae"
    own_losses: ClassVar[tuple[str, ...]] = ("negative_elbo",)

    def __post_init__(self) -> None:
        for field_name in ("input_size", "hidden_size", "latent_size"):
            check_positive_int(field_name, getattr(self, field_name))
        object.__setattr__(self, "activation", Activation.parse(self.activation))
        if self.reconstruction not in RECONSTRUCTIONS:
            raise SpecError("reconstruction", self.reconstruction, RECONSTRUCTIONS)
        check_number("kl_weight", self.kl_weight, low=0.0)
        super().__post_init__()

    @property
    def encoder(self) -> MLPSpec:
        """The encoder as an MLP: its logits are [mean | log_variance]."""
        return MLPSpec(
            f"{self.name}_encoder", self.input_size, (self.hidden_size,), 2 * self.latent_size,
            self.activation, "linear", kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
        )  # fmt: skip

    @property
    def decoder(self) -> MLPSpec:
        """The decoder as an MLP: from a latent sample to the image's logits."""
        return MLPSpec(
            f"{self.name}_decoder", self.latent_size, (self.hidden_size,), self.input_size,
            self.activation, "sigmoid", kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
        )  # fmt: skip

    @property
    def input_shape(self) -> tuple[int]:
        """One image and its noise ε, side by side."""
        return (self.input_size + self.latent_size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.input_size,)

    @property
    def output_size(self) -> int:
        return self.input_size

    def describe(self) -> str:
        kl = "" if self.kl_weight == 1 else f" × {self.kl_weight:g}"
        return (
            f"{self.input_size}-{self.hidden_size}({self.activation})-{self.latent_size}×2 (mean, log-variance) "
            f"~ z → {self.hidden_size}({self.activation})-{self.input_size}(sigmoid); "
            f"{self.reconstruction} + KL{kl}"
        )

    def forward_flops(self, batch: int) -> int:
        """The encoder and the decoder; the reparameterisation is a few operations per latent unit."""
        return self.encoder.forward_flops(batch) + self.decoder.forward_flops(batch)

    def example_batch(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Flattened test digits with a seeded ε beside them, and the digits as targets."""
        return vae_batch(digits((self.input_size,)).x_test[:size], self.latent_size, seed)

    @property
    def recipe_tasks(self) -> tuple[str, ...]:
        return (DIGITS_RECONSTRUCTION,)

    def task_split(self, task: str, seed: int) -> Split:
        """The flattened digits as their own targets: ε is drawn per step (:meth:`model_inputs`)."""
        return digit_task(task, (self.input_size,), seed)

    def model_inputs(self, examples: np.ndarray, seed: int, stream: int) -> np.ndarray:
        """The images with their noise ε beside them, drawn from ``stream`` (:func:`spec.data.vae_inputs`)."""
        return vae_inputs(examples, latent_noise(len(examples), self.latent_size, seed, stream))


# What a GAN's generator may end in: unbounded samples (a 2-D mixture) or pixels in [0, 1].
GENERATOR_OUTPUTS = ("linear", "sigmoid")


class _GANModel(ModelSpec):
    """What a GAN spec of either kind derives alike from its two networks, its ``latent_size``,
    ``data_shape`` and ``generator_output``: the model's input is the latent code, its output a sample.
    It trains with two losses, each updating one network (:mod:`spec.losses`)."""

    kind: ClassVar[str] = "gan"
    own_losses: ClassVar[tuple[str, ...]] = ("gan_discriminator", "gan_generator")
    generates_samples: ClassVar[bool] = True

    if TYPE_CHECKING:  # fields or properties of each kind

        @property
        def generator(self) -> MLPSpec | CNNSpec: ...

        @property
        def discriminator(self) -> MLPSpec | CNNSpec: ...

        @property
        def latent_size(self) -> int: ...

        @property
        def generator_output(self) -> str: ...

        @property
        def data_shape(self) -> tuple[int, ...]: ...

    @property
    def output_activation(self) -> str:
        return self.generator_output

    @property
    def input_shape(self) -> tuple[int]:
        return (self.latent_size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.data_shape

    @property
    def output_size(self) -> int:
        return math.prod(self.data_shape)

    @property
    def reconstructs_input(self) -> bool:
        return False

    def describe(self) -> str:
        return f"G {self.generator.describe()}; D {self.discriminator.describe()}"

    def forward_flops(self, batch: int) -> int:
        """The model's forward: the generator's samples."""
        return self.generator.forward_flops(batch)

    def train_step_flops(self, batch: int) -> int:
        """The discriminator's step (the default loss): the generator's samples, then the
        discriminator forward and backward on them and on as many real examples."""
        return self.generator.forward_flops(batch) + 3 * self.discriminator.forward_flops(2 * batch)

    @property
    def recipe_tasks(self) -> tuple[str, ...]:
        """Points of the ring for a 2-D GAN; digit images (8×8 or 28×28, flat or not) for one whose
        samples have as many values."""
        if self.data_shape == (2,):
            return (GAUSSIAN_RING,)
        return (DIGITS,) if self.output_size in (64, 784) else ()

    def task_split(self, task: str, seed: int) -> Split:
        """The examples the generator learns to draw: the ring's points (labelled with their mode),
        or the digits shaped as its samples."""
        return RING.split(seed=seed) if task == GAUSSIAN_RING else digit_task(task, self.data_shape, seed)

    def latents(self, count: int, seed: int, stream: int) -> np.ndarray:
        """``count`` latent codes z from random ``stream`` of ``seed`` (:func:`spec.data.latent_noise`)."""
        return latent_noise(count, self.latent_size, seed, stream)

    def training_steps(
        self, x: np.ndarray, y: np.ndarray, loss: str, seed: int, step: int
    ) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """The discriminator's step on the real examples ``x`` and samples from fresh z, then the
        generator's through the updated discriminator, with the same z (the recipe's ``loss`` is
        the first)."""
        z = self.latents(len(x), seed, step)
        return [(z, x, "gan_discriminator"), (z, x, "gan_generator")]

    def evaluation_batch(
        self, x: np.ndarray, y: np.ndarray, loss: str, seed: int
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """The discriminator's loss on the held-out examples and as many samples."""
        return self.latents(len(x), seed, EVALUATION_STREAM), x, "gan_discriminator"

    def example_batch(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Latents z, and as many real examples: points of the ring for a 2-D GAN, test digits otherwise."""
        z = latent_noise(size, self.latent_size, seed, 0)
        if self.data_shape == (2,):
            return z, RING.sample(size, seed)[0]
        return z, digits(self.data_shape, seed=seed).x_test[:size]


@dataclass(frozen=True)
class GANSpec(_GANModel):
    """A generative adversarial network (Goodfellow et al. 2014) of two MLPs.

    Generator: ``latent_size`` → ``generator_hidden`` (``activation``) → ``data_size`` with
    ``generator_output``. Discriminator: ``data_size`` → ``discriminator_hidden``
    (``discriminator_activation``) → one logit, the log-odds that its input is real. The model's
    input is the latent noise z (drawn by the data side, so every backend sees the same), its
    logits the generator's before ``generator_output``, its outputs the samples. It trains with two
    losses (:mod:`spec.losses`), each updating one network: ``gan_discriminator`` and the
    non-saturating ``gan_generator``; a recipe alternates them (:func:`spec.training.fit`).
    """

    latent_size: int
    data_size: int
    generator_hidden: tuple[int, ...]
    discriminator_hidden: tuple[int, ...]
    activation: Activation | str = "relu"
    discriminator_activation: Activation | str = "leaky_relu(0.2)"
    generator_output: str = "linear"
    kernel_l2: float = field(default=0.0, init=False)
    frozen: tuple[str, ...] = field(default=(), init=False)
    frozen_batchnorm: str = field(default="inference", init=False)

    def __post_init__(self) -> None:
        check_positive_int("latent_size", self.latent_size)
        check_positive_int("data_size", self.data_size)
        if self.generator_output not in GENERATOR_OUTPUTS:
            raise SpecError("generator_output", self.generator_output, GENERATOR_OUTPUTS)
        # the parts validate their own fields (hidden sizes, activations)
        object.__setattr__(self, "activation", Activation.parse(self.activation))
        object.__setattr__(self, "discriminator_activation", Activation.parse(self.discriminator_activation))
        object.__setattr__(self, "generator_hidden", self.generator.hidden_sizes)
        object.__setattr__(self, "discriminator_hidden", self.discriminator.hidden_sizes)
        super().__post_init__()

    @property
    def generator(self) -> MLPSpec:
        return MLPSpec(
            f"{self.name}_generator", self.latent_size, self.generator_hidden, self.data_size, self.activation,
            self.generator_output, kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
        )  # fmt: skip

    @property
    def discriminator(self) -> MLPSpec:
        return MLPSpec(
            f"{self.name}_discriminator", self.data_size, self.discriminator_hidden, 1,
            self.discriminator_activation, "sigmoid", kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
        )  # fmt: skip

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.data_size,)


@dataclass(frozen=True)
class ConvGANSpec(_GANModel):
    """A DCGAN-style GAN (Radford et al. 2016) whose two networks are sequential CNNs: a generator
    from the latent vector (Dense → Reshape → transposed convs) to an image, and a discriminator
    from an image (strided convs → Flatten → Dense) to one logit. Inputs, losses and training are
    those of :class:`GANSpec`. Without BatchNorm or Dropout (DCGAN has BatchNorm): whose batch
    statistics — real and generated batches apart or together, the generator's step updating the
    discriminator's running ones or not — is a convention of its own, not pinned here yet."""

    generator: CNNSpec
    discriminator: CNNSpec
    # the networks hold their own initializers
    kernel_initializer: str = field(default="glorot_uniform", init=False)
    bias_initializer: str = field(default="zeros", init=False)
    kernel_l2: float = field(default=0.0, init=False)
    frozen: tuple[str, ...] = field(default=(), init=False)
    frozen_batchnorm: str = field(default="inference", init=False)

    def __post_init__(self) -> None:
        for part in ("generator", "discriminator"):
            network = getattr(self, part)
            if not isinstance(network, CNNSpec):
                raise SpecError(part, network, "a CNNSpec")
            if network.kernel_l2 or network.frozen:
                raise SpecError(f"{part}.kernel_l2/frozen", (network.kernel_l2, network.frozen), "0 and ()")
            held = [type(layer).__name__ for layer in network.layers if isinstance(layer, (BatchNorm, Dropout))]
            if held:
                raise SpecError(f"{part}.layers", held[0], "layers without batch statistics or noise")
        if len(self.generator.input_shape) != 1:
            raise SpecError("generator.input_shape", self.generator.input_shape, "a latent vector (size,)")
        if self.generator.output_activation not in GENERATOR_OUTPUTS:
            raise SpecError("generator.output_activation", self.generator.output_activation, GENERATOR_OUTPUTS)
        if self.generator.output_shape != self.discriminator.input_shape:
            raise SpecError(
                "generator", f"samples of shape {self.generator.output_shape}",
                f"the discriminator's input shape {self.discriminator.input_shape}",
            )  # fmt: skip
        if self.discriminator.output_shape != (1,) or self.discriminator.output_activation != "sigmoid":
            raise SpecError(
                "discriminator", f"{self.discriminator.output_shape} {self.discriminator.output_activation} outputs",
                "one sigmoid output, the probability that its input is real",
            )  # fmt: skip
        super().__post_init__()

    @property
    def latent_size(self) -> int:
        return self.generator.input_shape[0]

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.discriminator.input_shape

    @property
    def generator_output(self) -> str:
        return self.generator.output_activation


# A GAN of either kind: their networks, losses and training are alike (``kind`` "gan").
GAN_SPECS = (GANSpec, ConvGANSpec)
