"""The spec's losses (definitions in :mod:`spec.losses`) with ``optax.losses``.

Optax losses return one value per example (or per element); the spec's reductions are means, taken here.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from impls.jax.models import GAN, VAE, VAEOutput, output_activation
from spec.losses import check_target_shape
from spec.models import VAESpec


def at_least_float32(x: jax.Array) -> jax.Array:
    """A mixed-precision model's bfloat16 or float16 outputs as float32 for its loss, as jmp's
    policies have it (``output_dtype``): Optax's losses compute in the dtype they are given, where
    torch's autocast and Keras's losses move to float32 themselves (docs/precision.md)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def compute_loss(loss: str, logits: jax.Array, targets: jax.Array, output_kind: str) -> jax.Array:
    check_target_shape(loss, logits.shape, targets.shape)
    logits = at_least_float32(logits)
    match loss:
        case "sparse_categorical_crossentropy":
            return optax.losses.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
        case "categorical_crossentropy":
            return optax.losses.softmax_cross_entropy(logits, targets).mean()
        case "binary_crossentropy":
            return optax.losses.sigmoid_binary_cross_entropy(logits, targets).mean()
        case "mse":
            # optax.losses.l2_loss is half the squared error; squared_error is the spec's.
            return optax.losses.squared_error(output_activation(logits, output_kind), targets).mean()
    raise ValueError(f"no Optax loss for {loss!r}")


def negative_elbo(spec: VAESpec, outputs: VAEOutput, images: jax.Array) -> jax.Array:
    """The VAE's loss: reconstruction summed over the pixels plus the weighted KL term, averaged
    over the batch."""
    logits, mean, log_variance = (at_least_float32(x) for x in outputs)
    if spec.reconstruction == "binary_crossentropy":
        per_pixel = optax.losses.sigmoid_binary_cross_entropy(logits, images)
    else:
        per_pixel = optax.losses.squared_error(jax.nn.sigmoid(logits), images)
    kl = -0.5 * jnp.sum(1 + log_variance - jnp.square(mean) - jnp.exp(log_variance), axis=-1)
    return jnp.mean(per_pixel.sum(axis=-1) + spec.kl_weight * kl)


def gan_loss(model: GAN, z: jax.Array, real: jax.Array, loss: str) -> jax.Array:
    """A GAN's discriminator loss (real labelled 1, generated 0; the generator held fixed) or its
    non-saturating generator loss (generated labelled real)."""

    def bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
        return optax.losses.sigmoid_binary_cross_entropy(at_least_float32(logits), labels)

    if loss == "gan_discriminator":
        fake = jax.lax.stop_gradient(model.infer(z))  # the samples are data for this step
        real_logits, fake_logits = model.discriminator(real), model.discriminator(fake)
        return (
            bce(real_logits, jnp.ones_like(real_logits)).mean() + bce(fake_logits, jnp.zeros_like(fake_logits)).mean()
        )
    fake_logits = model.discriminator(model.infer(z))
    return bce(fake_logits, jnp.ones_like(fake_logits)).mean()


def vae_loss(model: VAE, inputs: jax.Array, images: jax.Array, loss: str) -> jax.Array:
    """The VAE's ``negative_elbo`` on a batch of images with their ε."""
    return negative_elbo(model.spec, model(inputs), images)


# The losses a kind of model owns (its spec's ``own_losses``), each from the model and a batch.
OWN_LOSSES: dict[str, Callable[..., jax.Array]] = {
    "negative_elbo": vae_loss,
    "gan_discriminator": gan_loss,
    "gan_generator": gan_loss,
}
