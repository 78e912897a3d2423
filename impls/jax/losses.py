"""The spec's losses (definitions in :mod:`spec.losses`) with ``optax.losses``.

Optax losses return one value per example (or per element); the spec's reductions are means, taken here.
"""

from __future__ import annotations

import jax
import optax

from impls.jax.models import output_activation


def compute_loss(loss: str, logits: jax.Array, targets: jax.Array, output_kind: str) -> jax.Array:
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
