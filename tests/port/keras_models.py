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
