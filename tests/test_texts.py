"""The teaching texts' models exactly as printed: the zoo's parameter counts equal the published ones,
and the framework's own model of the printed code (Keras's ``Sequential``) counts the same."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import framework_backend
from spec.models import ZOO
from spec.params import count_params, param_specs

# Each model's count as its text's model.summary() (or torchvision) prints it.
PUBLISHED = {
    "mnist_mlp": 407_050,  # Dense(512, relu) → Dense(10, softmax) on 784 inputs
    "mnist_mlp_multilabel": 101_770,  # Dense(128, relu) → Dense(10, sigmoid) on 784 inputs
    "cnn_64": 1_626_442,  # conv32 → pool → conv64 → pool → Dense 128 → Dense 10 on 64×64×3
    "simple_rnn_classifier": 2_651,  # SimpleRNN(50) → Dense(1, sigmoid) on 100 steps of 1 feature
    "resnet50_finetune": 25_557_032 - (2048 * 1000 + 1000) + (2048 * 5 + 5),  # torchvision's, a 5-class head
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_zoo_counts_are_the_published_ones(name: str) -> None:
    # as published: every layer trainable (a fine-tuning spec freezes some)
    assert count_params(dataclasses.replace(ZOO[name], frozen=())).trainable == PUBLISHED[name]


def _printed_keras_models(keras) -> dict:
    """The Keras code of the texts, as printed (the optimizer and loss do not change the count)."""
    layers = keras.layers
    return {
        "mnist_mlp": keras.Sequential(
            [keras.Input((784,)), layers.Dense(512, activation="relu"), layers.Dense(10, activation="softmax")]
        ),
        "mnist_mlp_multilabel": keras.Sequential(
            [keras.Input((784,)), layers.Dense(128, activation="relu"), layers.Dense(10, activation="sigmoid")]
        ),
        "cnn_64": keras.Sequential(
            [
                keras.Input((64, 64, 3)),
                layers.Conv2D(32, (3, 3), activation="relu"),
                layers.MaxPooling2D((2, 2)),
                layers.Conv2D(64, (3, 3), activation="relu"),
                layers.MaxPooling2D((2, 2)),
                layers.Flatten(),
                layers.Dense(128, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        ),
        "simple_rnn_classifier": keras.Sequential(
            [keras.Input((100, 1)), layers.SimpleRNN(50, activation="tanh"), layers.Dense(1, activation="sigmoid")]
        ),
    }


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_mlp_multilabel", "cnn_64", "simple_rnn_classifier"])
def test_the_printed_keras_code_counts_what_the_zoo_does(request: pytest.FixtureRequest, name: str) -> None:
    framework_backend(request, "keras")
    import keras

    native = _printed_keras_models(keras)[name]
    assert native.count_params() == count_params(ZOO[name]).total == PUBLISHED[name]


def _attention_count(spec_name: str) -> int:
    infos = param_specs(ZOO[spec_name])
    return sum(info.size for name, info in infos.items() if name.startswith("encoder_0/attention/"))


def test_multi_head_attention_with_keras_key_dim_has_its_count() -> None:
    # MultiHeadAttention(num_heads=8, key_dim=64) on 64 features: q, k, v 3·(64·8·64 + 8·64), output 8·64·64 + 64
    assert _attention_count("transformer_keras_heads") == 3 * (64 * 8 * 64 + 8 * 64) + 8 * 64 * 64 + 64 == 132_672


def test_the_printed_keras_attention_counts_what_the_zoo_does(request: pytest.FixtureRequest) -> None:
    framework_backend(request, "keras")
    import keras

    attention = keras.layers.MultiHeadAttention(num_heads=8, key_dim=64)
    query = keras.ops.zeros((1, 24, 64))
    attention(query, query)
    assert attention.count_params() == _attention_count("transformer_keras_heads")
