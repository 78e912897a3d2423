"""The spec's losses (definitions in :mod:`spec.losses`) with ``torch.nn.functional``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from impls.torch.models import GAN, VAE, VAEOutput, output_activation
from spec.losses import check_target_shape
from spec.models import VAESpec


def compute_loss(loss: str, logits: torch.Tensor, targets: torch.Tensor, output_kind: str) -> torch.Tensor:
    check_target_shape(loss, logits.shape, targets.shape)
    match loss:
        case "sparse_categorical_crossentropy":
            return F.cross_entropy(logits, targets)  # integer targets, mean over the batch
        case "categorical_crossentropy":
            return F.cross_entropy(logits, targets)  # probability targets, mean over the batch
        case "binary_crossentropy":
            return F.binary_cross_entropy_with_logits(logits, targets)  # mean over every element
        case "mse":
            return F.mse_loss(output_activation(logits, output_kind), targets)
    raise ValueError(f"no torch loss for {loss!r}")


def negative_elbo(spec: VAESpec, outputs: VAEOutput, images: torch.Tensor) -> torch.Tensor:
    """The VAE's loss: reconstruction summed over the pixels plus the weighted KL term, averaged
    over the batch."""
    if spec.reconstruction == "binary_crossentropy":
        per_pixel = F.binary_cross_entropy_with_logits(outputs.logits, images, reduction="none")
    else:
        per_pixel = F.mse_loss(torch.sigmoid(outputs.logits), images, reduction="none")
    log_variance = outputs.log_variance
    kl = -0.5 * (1 + log_variance - outputs.mean.square() - log_variance.exp()).sum(dim=-1)
    return (per_pixel.sum(dim=-1) + spec.kl_weight * kl).mean()


def gan_loss(model: GAN, z: torch.Tensor, real: torch.Tensor, loss: str) -> torch.Tensor:
    """A GAN's discriminator loss (real labelled 1, generated 0; the generator held fixed) or its
    non-saturating generator loss (generated labelled real)."""
    if loss == "gan_discriminator":
        with torch.no_grad():  # the samples are data for this step
            fake = model.infer(z)
        real_logits, fake_logits = model.discriminator(real), model.discriminator(fake)
        return F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    fake_logits = model.discriminator(model.infer(z))
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def vae_loss(model: VAE, inputs: torch.Tensor, images: torch.Tensor, loss: str) -> torch.Tensor:
    """The VAE's ``negative_elbo`` on a batch of images with their ε."""
    return negative_elbo(model.spec, model(inputs), images)


# The losses a kind of model owns (its spec's ``own_losses``), each from the model and a batch.
OWN_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "negative_elbo": vae_loss,
    "gan_discriminator": gan_loss,
    "gan_generator": gan_loss,
}
