"""Keras models written the way the texts print them: ``Sequential`` and functional, with the
activations given inside the layers. Built on call, after the Keras backend has been loaded."""

from __future__ import annotations

import keras


def mnist_dense() -> keras.Model:
    """The texts' MNIST classifier: Dense(512, relu), Dense(10, softmax), trained with RMSprop."""
    return keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10, activation="softmax")],
        name="mnist_dense",
    )


def mnist_convnet() -> keras.Model:
    """Keras's "Simple MNIST convnet" example."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="mnist_convnet",
    )


def lstm_forecaster() -> keras.Model:
    """Two stacked LSTMs and a Dense forecast of the next value."""
    return keras.Sequential(
        [
            keras.Input((20, 1)),
            keras.layers.LSTM(16, return_sequences=True),
            keras.layers.LSTM(16),
            keras.layers.Dense(1),
        ],
        name="lstm_forecaster",
    )


def bigru_classifier() -> keras.Model:
    """A bidirectional reset-after GRU (Keras's default) and a sigmoid unit."""
    return keras.Sequential(
        [
            keras.Input((10, 2)),
            keras.layers.Bidirectional(keras.layers.GRU(8)),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="bigru_classifier",
    )


def functional_mlp() -> keras.Model:
    """A functional model: Dense with an exact GELU, BatchNormalization (Keras's momentum and ε)."""
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(8, activation="gelu")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    return keras.Model(inputs, keras.layers.Dense(3)(hidden), name="functional_mlp")


def text_transformer(extra_dense: bool = False) -> keras.Model:
    """Keras's "Text classification with Transformer" example (its ``TokenAndPositionEmbedding`` and
    ``TransformerBlock`` layers, heads as wide as the embedding), with the softmax head on the pooled
    features directly: the example's extra Dense(20, relu) between them (``extra_dense``) is no part
    of the spec's Transformer."""

    class TransformerBlock(keras.layers.Layer):
        def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, rate: float = 0.1) -> None:
            super().__init__()
            self.att = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = keras.Sequential([keras.layers.Dense(ff_dim, activation="relu"), keras.layers.Dense(embed_dim)])
            self.layernorm1 = keras.layers.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = keras.layers.LayerNormalization(epsilon=1e-6)
            self.dropout1 = keras.layers.Dropout(rate)
            self.dropout2 = keras.layers.Dropout(rate)

        def call(self, inputs: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
            attn_output = self.dropout1(self.att(inputs, inputs), training=training)
            out1 = self.layernorm1(inputs + attn_output)
            ffn_output = self.dropout2(self.ffn(out1), training=training)
            return self.layernorm2(out1 + ffn_output)

    class TokenAndPositionEmbedding(keras.layers.Layer):
        def __init__(self, maxlen: int, vocab_size: int, embed_dim: int) -> None:
            super().__init__()
            self.token_emb = keras.layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = keras.layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
            positions = self.pos_emb(keras.ops.arange(start=0, stop=keras.ops.shape(x)[-1], step=1))
            return self.token_emb(x) + positions

    inputs = keras.Input(shape=(16,))
    x = TokenAndPositionEmbedding(16, 40, 16)(inputs)
    x = TransformerBlock(16, 2, 32)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(0.1)(x)
    if extra_dense:
        x = keras.layers.Dropout(0.1)(keras.layers.Dense(20, activation="relu")(x))
    return keras.Model(inputs=inputs, outputs=keras.layers.Dense(2, activation="softmax")(x), name="text_transformer")
