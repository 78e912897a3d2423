"""Loss names, their definitions and reductions, and which output activation each needs.

Every loss is computed from the model's logits (the output layer before its activation) where the
definition allows, as the frameworks' numerically stable losses are:

* ``sparse_categorical_crossentropy``: targets are integer class ids, shape (batch,);
  ``mean_b( logsumexp(z_b) - z_b[y_b] )``. Needs a softmax output.
* ``categorical_crossentropy``: targets are probability rows (one-hot), shape (batch, classes);
  ``mean_b( -sum_c t_bc * log_softmax(z_b)_c )``. Needs a softmax output.
* ``binary_crossentropy``: targets in [0, 1], shape (batch, outputs);
  ``mean_{b,c}( max(z,0) - z*t + log(1 + exp(-|z|)) )``, i.e. the mean over every element.
  Needs a sigmoid output.
* ``mse``: ``mean_{b,c}( (y_hat - t)^2 )`` over every element, on the activated output ``y_hat``.

A model kind can have losses of its own, computed from more than its logits (its spec's ``own_losses``):

* ``negative_elbo``, a VAE's (:class:`spec.models.VAESpec`): targets are the images, shape
  (batch, pixels); ``mean_b( R_b + kl_weight * KL_b )`` where ``R_b`` sums the reconstruction loss
  over the pixels of example b — ``max(z,0) - z*t + log(1 + exp(-|z|))`` for ``binary_crossentropy``,
  ``(sigmoid(z) - t)^2`` for ``mse`` — and ``KL_b = -1/2 * sum_j( 1 + logvar_j - mean_j^2 - exp(logvar_j) )``
  is KL( N(mean, exp(logvar)) || N(0, I) ). Summed, not averaged, over pixels: the averaged form
  (what ``keras.losses.binary_crossentropy`` returns) would weigh the KL term 784 times more.
* ``gan_discriminator`` and ``gan_generator``, a GAN's (:class:`spec.models.GANSpec`): the input
  is the latent noise z, targets the real batch; ``D`` is the discriminator's logit and ``G(z)`` the
  generator's samples. ``gan_discriminator = mean_b softplus(-D(real_b)) + mean_b softplus(D(G(z_b)))``
  — binary cross-entropy with real labelled 1 and generated 0, the two means added — trains the
  discriminator only, the generated samples held fixed. ``gan_generator = mean_b softplus(-D(G(z_b)))``
  — the non-saturating loss, generated samples labelled real — trains the generator only, through the
  discriminator held fixed (``spec.params.trained_names``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spec.errors import SpecError

if TYPE_CHECKING:  # spec.models builds on this module
    from spec.models import ModelSpec

LOSS_OUTPUT_ACTIVATIONS: dict[str, tuple[str, ...]] = {
    "sparse_categorical_crossentropy": ("softmax",),
    "categorical_crossentropy": ("softmax",),
    "binary_crossentropy": ("sigmoid",),
    "mse": ("softmax", "sigmoid", "linear"),
}
LOSSES = tuple(LOSS_OUTPUT_ACTIVATIONS)

# The loss a model is trained with unless a recipe says otherwise.
DEFAULT_LOSS = {"softmax": "sparse_categorical_crossentropy", "sigmoid": "binary_crossentropy", "linear": "mse"}


def takes_class_ids(loss: str) -> bool:
    """Whether the loss's targets are integer class ids (else float arrays shaped like the output)."""
    return loss == "sparse_categorical_crossentropy"


def check_target_shape(loss: str, logits_shape: tuple[int, ...], targets_shape: tuple[int, ...]) -> None:
    """Raise :class:`SpecError` unless the targets are shaped as ``loss`` needs: the logits' batch
    for class ids, the logits' own shape otherwise (an element-wise loss would broadcast silently)."""
    logits_shape, targets_shape = tuple(logits_shape), tuple(targets_shape)
    expected = logits_shape[:1] if takes_class_ids(loss) else logits_shape
    if targets_shape != expected:
        raise SpecError("targets", f"shape {targets_shape}", f"shape {expected} for {loss} on logits {logits_shape}")


def kind_owning(loss: str) -> str | None:
    """The kind of model whose spec class owns ``loss`` (lists it in ``own_losses``), if any."""
    from spec.models.base import ModelSpec  # spec.models imports this module: read the classes at call time

    classes: list[type[ModelSpec]] = ModelSpec.__subclasses__()
    while classes:
        cls = classes.pop()
        if loss in cls.own_losses:
            return cls.kind
        classes += cls.__subclasses__()
    return None


def check_model_loss(spec: ModelSpec, loss: str) -> str:
    """Return ``loss`` if a model of ``spec`` can be trained with it, else raise :class:`SpecError`:
    a kind with losses of its own takes those only, every other model a loss that fits its output
    activation (:func:`check_loss`)."""
    if spec.own_losses:
        if loss not in spec.own_losses:
            raise SpecError("loss", loss, f"{', '.join(map(repr, spec.own_losses))}: the losses of a {spec.kind} model")
        return loss
    owner = kind_owning(loss)
    if owner is not None:
        raise SpecError("loss", loss, f"a loss for a {spec.output_activation!r} output ({loss!r} is a {owner}'s)")
    return check_loss(loss, spec.output_activation)


def check_loss(loss: str, output_activation: str) -> str:
    """Return ``loss`` if it is known and fits ``output_activation``, else raise :class:`SpecError`."""
    if loss not in LOSS_OUTPUT_ACTIVATIONS:
        raise SpecError("loss", loss, LOSSES)
    allowed = LOSS_OUTPUT_ACTIVATIONS[loss]
    if output_activation not in allowed:
        raise SpecError(
            "loss",
            loss,
            f"a loss for a {output_activation!r} output: "
            + ", ".join(n for n, acts in LOSS_OUTPUT_ACTIVATIONS.items() if output_activation in acts),
        )
    return loss
