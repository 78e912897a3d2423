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
"""

from __future__ import annotations

from spec.errors import SpecError

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
