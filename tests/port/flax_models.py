"""Flax NNX modules written the way Flax's documentation writes them: attribute-style modules whose
``__call__`` chains layers and functions, and ``nnx.Sequential``. Built on call, after the JAX
backend has been loaded."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx


class CNN(nnx.Module):
    """Flax's MNIST tutorial CNN, narrower: convolutions with ReLU, ``partial(nnx.avg_pool, ...)``,
    ``x.reshape(x.shape[0], -1)``, two Linear layers."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 8, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, kernel_size=(3, 3), rngs=rngs)
        self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(16 * 7 * 7, 32, rngs=rngs)
        self.linear2 = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.avg_pool(nnx.relu(self.conv1(x)))
        x = self.avg_pool(nnx.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.linear1(x))
        return self.linear2(x)


class MLP(nnx.Module):
    """Flax's NNX basics MLP: Linear, BatchNorm, Dropout, GELU (``nnx.gelu``: the tanh form), Linear."""

    def __init__(self, din: int = 64, dmid: int = 32, dout: int = 10, *, rngs: nnx.Rngs) -> None:
        self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.bn = nnx.BatchNorm(dmid, rngs=rngs)
        self.linear2 = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.gelu(self.dropout(self.bn(self.linear1(x))))
        return self.linear2(x)


def sequential(rngs: nnx.Rngs) -> nnx.Sequential:
    """``nnx.Sequential`` of layers and functions, a softmax output."""
    return nnx.Sequential(
        nnx.Linear(64, 16, rngs=rngs), nnx.tanh,
        nnx.Linear(16, 16, rngs=rngs), partial(nnx.leaky_relu, negative_slope=0.2),
        nnx.Linear(16, 3, rngs=rngs), nnx.softmax,
    )  # fmt: skip


class EncoderBlock(nnx.Module):
    """A post-norm encoder block as Flax users write one: ``nnx.MultiHeadAttention`` under the
    padding mask, an FFN of two Linears with ``nnx.gelu`` (Flax's default: the tanh form), dropout."""

    def __init__(self, d_model: int, num_heads: int, ff_size: int, *, rngs: nnx.Rngs) -> None:
        self.attention = nnx.MultiHeadAttention(num_heads, d_model, decode=False, rngs=rngs)
        self.norm1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.linear1 = nnx.Linear(d_model, ff_size, rngs=rngs)
        self.linear2 = nnx.Linear(ff_size, d_model, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = self.norm1(x + self.dropout(self.attention(x, mask=mask)))
        return self.norm2(x + self.dropout(self.linear2(nnx.gelu(self.linear1(x)))))


class TextClassifier(nnx.Module):
    """Token and position ``nnx.Embed``s, two encoder blocks, a Linear head on the mean of the
    non-padding positions (token 0 pads)."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.token_embed = nnx.Embed(50, 32, rngs=rngs)
        self.pos_embed = nnx.Embed(16, 32, rngs=rngs)
        self.blocks = nnx.List([EncoderBlock(32, 4, 64, rngs=rngs) for _ in range(2)])
        self.head = nnx.Linear(32, 3, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        keep = tokens != 0
        mask = nnx.make_attention_mask(jnp.ones_like(keep), keep)
        x = self.token_embed(tokens) + self.pos_embed(jnp.arange(tokens.shape[1]))
        for block in self.blocks:
            x = block(x, mask)
        return self.head((x * keep[..., None]).sum(axis=1) / keep.sum(axis=1, keepdims=True))


class LSTMForecaster(nnx.Module):
    """Two stacked ``nnx.RNN(nnx.OptimizedLSTMCell)`` layers and a Linear head on the last step."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.lstm1 = nnx.RNN(nnx.OptimizedLSTMCell(1, 16, rngs=rngs))
        self.lstm2 = nnx.RNN(nnx.OptimizedLSTMCell(16, 16, rngs=rngs))
        self.head = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.lstm2(self.lstm1(x))[:, -1])


class GRUClassifier(nnx.Module):
    """An ``nnx.RNN(nnx.GRUCell)`` (no recurrent bias) and a sigmoid Linear head on the last step."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.gru = nnx.RNN(nnx.GRUCell(2, 8, rngs=rngs))
        self.head = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.sigmoid(self.head(self.gru(x)[:, -1]))


class BiLSTMTagger(nnx.Module):
    """An ``nnx.Bidirectional`` LSTM (Flax concatenates the directions) and a Linear tag per step."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.bilstm = nnx.Bidirectional(
            nnx.RNN(nnx.OptimizedLSTMCell(3, 8, rngs=rngs)), nnx.RNN(nnx.OptimizedLSTMCell(3, 8, rngs=rngs))
        )
        self.tag = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.tag(self.bilstm(x))


class BiGRUClassifier(nnx.Module):
    """Two ``nnx.Bidirectional`` GRU layers and a softmax head on the last states: the forward
    direction's at the last step, the backward one's at the first, where it ends."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        def bidirectional(features: int) -> nnx.Bidirectional:
            return nnx.Bidirectional(
                nnx.RNN(nnx.GRUCell(features, 6, rngs=rngs)), nnx.RNN(nnx.GRUCell(features, 6, rngs=rngs))
            )

        self.layers = nnx.List([bidirectional(2), bidirectional(12)])
        self.head = nnx.Linear(12, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        last = jnp.concatenate([x[:, -1, :6], x[:, 0, 6:]], axis=-1)
        return nnx.softmax(self.head(last))
