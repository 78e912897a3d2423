"""The spec's losses (definitions in :mod:`spec.losses`) with ``keras.losses``, always from logits."""

from __future__ import annotations

import keras
import tensorflow as tf

from impls.keras.models import output_activation


@tf.autograph.experimental.do_not_convert  # plain Python dispatch on the loss name, nothing to convert
def compute_loss(loss: str, logits: keras.KerasTensor, targets: keras.KerasTensor, output_kind: str):
    # Keras losses default to probabilities (from_logits=False) and then clip them to [1e-7, 1 − 1e-7];
    # logits avoid that clip and match the spec's definitions.
    match loss:
        case "sparse_categorical_crossentropy":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)(targets, logits)
        case "categorical_crossentropy":
            return keras.losses.CategoricalCrossentropy(from_logits=True)(targets, logits)
        case "binary_crossentropy":
            return keras.losses.BinaryCrossentropy(from_logits=True)(targets, logits)
        case "mse":
            return keras.losses.MeanSquaredError()(targets, output_activation(logits, output_kind))
    raise ValueError(f"no Keras loss for {loss!r}")
