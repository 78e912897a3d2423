"""The spec's models as Keras 3 layers and models."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import keras

from spec.models import Activation, MLPSpec


def activation(act: Activation) -> Callable[[keras.KerasTensor], keras.KerasTensor]:
    """The Keras activation function for a spec activation, every parameter passed explicitly."""
    match act.kind:
        case "relu" | "tanh" | "sigmoid" | "linear":
            return keras.activations.get(act.kind)
        case "leaky_relu":
            return partial(keras.activations.leaky_relu, negative_slope=act.negative_slope)
        case "elu":
            return partial(keras.activations.elu, alpha=act.alpha)
        case "gelu":
            return partial(keras.activations.gelu, approximate=act.approximate == "tanh")
    raise ValueError(f"no Keras activation for {act}")


def output_activation(logits: keras.KerasTensor, kind: str) -> keras.KerasTensor:
    """The model's outputs from its logits (softmax over the last axis, sigmoid or identity)."""
    if kind == "softmax":
        return keras.ops.softmax(logits, axis=-1)
    if kind == "sigmoid":
        return keras.ops.sigmoid(logits)
    return logits


class MLP(keras.Model):
    """Dense layers with an activation (and dropout) on each hidden one; ``call`` returns logits.

    The spec's L2 term is each Dense layer's ``kernel_regularizer``: Keras collects it in
    ``model.losses`` during the forward pass, and the train step adds it to the loss.
    """

    def __init__(self, spec: MLPSpec, seed: int = 0, **kwargs) -> None:
        super().__init__(name=spec.name, **kwargs)
        self.spec = spec
        hidden = [activation(a) for a in spec.activations] + [None]  # the output layer gives logits
        regularizer = keras.regularizers.L2(spec.kernel_l2) if spec.kernel_l2 else None
        self.dense = [
            keras.layers.Dense(
                units, activation=act, use_bias=spec.use_bias, kernel_regularizer=regularizer, name=f"dense_{i}"
            )
            for i, (units, act) in enumerate(zip(spec.layer_sizes[1:], hidden))
        ]
        self.dropout = [
            keras.layers.Dropout(spec.dropout, seed=seed + i, name=f"dropout_{i}") for i in range(len(hidden) - 1)
        ]

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        for layer in self.dense:
            layer.build(input_shape)
            input_shape = layer.compute_output_shape(input_shape)

    def call(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        for layer, dropout in zip(self.dense, self.dropout):
            x = dropout(layer(x), training=training)
        return self.dense[-1](x)

    def infer(self, x: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        """The model's outputs: logits passed through the spec's output activation."""
        return output_activation(self(x, training=training), self.spec.output_activation)
