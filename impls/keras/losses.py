"""The spec's losses (definitions in :mod:`spec.losses`) with ``keras.losses``, always from logits."""

from __future__ import annotations

from collections.abc import Callable

import keras

from impls.keras.models import GAN, VAE, VAEOutput, output_activation
from spec.losses import check_target_shape
from spec.models import VAESpec


def loss_dtype(logits: keras.KerasTensor) -> str | None:
    """The dtype a ``keras.losses.Loss`` computes in: a Loss casts its inputs to its own dtype,
    ``keras.config.floatx()`` (float32) unless told, whatever the model's — so a float64 model's
    losses are told float64."""
    return "float64" if keras.backend.standardize_dtype(logits.dtype) == "float64" else None


def compute_loss(
    loss: str, logits: keras.KerasTensor, targets: keras.KerasTensor, output_kind: str
) -> keras.KerasTensor:
    check_target_shape(loss, logits.shape, targets.shape)
    dtype = loss_dtype(logits)
    # Keras losses default to probabilities (from_logits=False) and then clip them to [1e-7, 1 − 1e-7];
    # logits avoid that clip and match the spec's definitions.
    match loss:
        case "sparse_categorical_crossentropy":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)(targets, logits)
        case "categorical_crossentropy":
            return keras.losses.CategoricalCrossentropy(from_logits=True, dtype=dtype)(targets, logits)
        case "binary_crossentropy":
            return keras.losses.BinaryCrossentropy(from_logits=True, dtype=dtype)(targets, logits)
        case "mse":
            return keras.losses.MeanSquaredError(dtype=dtype)(targets, output_activation(logits, output_kind))
    raise ValueError(f"no Keras loss for {loss!r}")


def negative_elbo(spec: VAESpec, outputs: VAEOutput, images: keras.KerasTensor) -> keras.KerasTensor:
    """The VAE's loss: reconstruction summed over the pixels plus the weighted KL term, averaged
    over the batch. ``keras.losses.binary_crossentropy`` would average over the pixels: the
    element-wise forms are summed here instead."""
    # in the losses' dtype, as a keras.losses.Loss computes: a mixed-precision model's outputs are
    # bfloat16 or float16, and TensorFlow's kernels do not mix them with the float32 images
    dtype = loss_dtype(outputs.logits) or keras.config.floatx()
    logits, mean, log_variance = (keras.ops.cast(x, dtype) for x in outputs)
    if spec.reconstruction == "binary_crossentropy":
        per_pixel = keras.ops.binary_crossentropy(images, logits, from_logits=True)
    else:
        per_pixel = keras.ops.square(keras.ops.sigmoid(logits) - images)
    kl = -0.5 * keras.ops.sum(1 + log_variance - keras.ops.square(mean) - keras.ops.exp(log_variance), axis=-1)
    return keras.ops.mean(keras.ops.sum(per_pixel, axis=-1) + spec.kl_weight * kl)


def gan_loss(model: GAN, z: keras.KerasTensor, real: keras.KerasTensor, loss: str) -> keras.KerasTensor:
    """A GAN's discriminator loss (real labelled 1, generated 0; the generator held fixed) or its
    non-saturating generator loss (generated labelled real)."""
    bce = keras.losses.BinaryCrossentropy(from_logits=True, dtype=loss_dtype(z))
    if loss == "gan_discriminator":
        fake = keras.ops.stop_gradient(model.infer(z, training=True))  # the samples are data for this step
        real_logits = model.discriminator(real, training=True)
        fake_logits = model.discriminator(fake, training=True)
        return bce(keras.ops.ones_like(real_logits), real_logits) + bce(keras.ops.zeros_like(fake_logits), fake_logits)
    fake_logits = model.discriminator(model.infer(z, training=True), training=True)
    return bce(keras.ops.ones_like(fake_logits), fake_logits)


def vae_loss(model: VAE, inputs: keras.KerasTensor, images: keras.KerasTensor, loss: str) -> keras.KerasTensor:
    """The VAE's ``negative_elbo`` on a batch of images with their ε, in training mode."""
    return negative_elbo(model.spec, model(inputs, training=True), images)


# The losses a kind of model owns (its spec's ``own_losses``), each from the model and a batch.
OWN_LOSSES: dict[str, Callable[..., keras.KerasTensor]] = {
    "negative_elbo": vae_loss,
    "gan_discriminator": gan_loss,
    "gan_generator": gan_loss,
}
