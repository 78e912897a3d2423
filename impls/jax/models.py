"""The spec's models as ``flax.nnx`` modules."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import pairwise

import jax
import jax.numpy as jnp
from flax import nnx

from spec.models import Activation, MLPSpec


def activation(act: Activation) -> Callable[[jax.Array], jax.Array]:
    """The JAX activation function for a spec activation, every parameter passed explicitly."""
    match act.kind:
        case "relu":
            return jax.nn.relu
        case "tanh":
            return jnp.tanh
        case "sigmoid":
            return jax.nn.sigmoid
        case "leaky_relu":
            return partial(jax.nn.leaky_relu, negative_slope=act.negative_slope)
        case "elu":
            return partial(jax.nn.elu, alpha=act.alpha)
        case "gelu":
            # jax.nn.gelu defaults to the tanh approximation; torch and Keras default to exact.
            return partial(jax.nn.gelu, approximate=act.approximate == "tanh")
        case "linear":
            return lambda x: x
    raise ValueError(f"no JAX activation for {act}")


def output_activation(logits: jax.Array, kind: str) -> jax.Array:
    """The model's outputs from its logits (softmax over the last axis, sigmoid or identity)."""
    if kind == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    if kind == "sigmoid":
        return jax.nn.sigmoid(logits)
    return logits


class MLP(nnx.Module):
    """Linear layers with an activation (and dropout) after each hidden one; ``__call__`` returns logits.

    ``model.train()`` / ``model.eval()`` switch dropout on and off; its masks come from the ``dropout``
    stream of ``rngs``.
    """

    def __init__(self, spec: MLPSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        sizes = spec.layer_sizes
        self.dense = nnx.List(
            [nnx.Linear(fan_in, fan_out, use_bias=spec.use_bias, rngs=rngs) for fan_in, fan_out in pairwise(sizes)]
        )
        self.activations = tuple(activation(a) for a in spec.activations)
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer, act in zip(self.dense, self.activations):
            x = self.dropout(act(layer(x)))
        return self.dense[-1](x)

    def l2_penalty(self) -> jax.Array:
        """The spec's L2 term of the training loss: ``kernel_l2 · Σ‖W‖²`` over the Linear kernels."""
        return self.spec.kernel_l2 * sum(jnp.sum(jnp.square(layer.kernel[...])) for layer in self.dense)

    def infer(self, x: jax.Array) -> jax.Array:
        """The model's outputs: logits passed through the spec's output activation."""
        return output_activation(self(x), self.spec.output_activation)
