"""Canonical parameters: names, shapes, counts, deterministic initialisation and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spec.errors import ParamError
from spec.models import MLPSpec, get_model
from spec.params import check_params, count_params, init_params, param_specs


def test_mnist_mlp_names_shapes_and_published_count() -> None:
    spec = get_model("mnist_mlp")
    shapes = {name: info.shape for name, info in param_specs(spec).items()}
    assert shapes == {
        "dense_0/kernel": (784, 512),
        "dense_0/bias": (512,),
        "dense_1/kernel": (512, 10),
        "dense_1/bias": (10,),
    }
    # Chollet, "Deep Learning with Python" (2nd ed., ch. 2) prints 401,920 + 5,130 = 407,050.
    assert count_params(spec).trainable == 407_050
    assert count_params(spec).non_trainable == 0


def test_count_without_bias_is_the_sum_of_kernel_sizes() -> None:
    spec = MLPSpec("nobias", 6, (5, 4), 3, "tanh", "linear", use_bias=False)
    assert list(param_specs(spec)) == ["dense_0/kernel", "dense_1/kernel", "dense_2/kernel"]
    assert count_params(spec).total == 6 * 5 + 5 * 4 + 4 * 3


def test_init_is_deterministic_and_seed_dependent() -> None:
    spec = get_model("digits_mlp")
    a, b, c = init_params(spec, 7), init_params(spec, 7), init_params(spec, 8)
    for name in a:
        assert a[name].dtype == np.float32
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["dense_0/kernel"], c["dense_0/kernel"])


def test_adding_a_layer_keeps_the_earlier_layers_values() -> None:
    short = MLPSpec("short", 8, (6,), 3, "relu", "softmax")
    deep = MLPSpec("deep", 8, (6, 5), 3, ("relu", "relu"), "softmax")
    np.testing.assert_array_equal(init_params(short, 3)["dense_0/kernel"], init_params(deep, 3)["dense_0/kernel"])


# Published definitions (Glorot & Bengio 2010; He et al. 2015; LeCun et al. 1998; torch.nn.Linear docs),
# as (kind, property, expected value) for a 400 × 300 kernel.
FAN_IN, FAN_OUT = 400, 300


@pytest.mark.parametrize(
    ("initializer", "bound", "std"),
    [
        ("glorot_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT)), math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("glorot_normal", None, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("he_uniform", math.sqrt(6 / FAN_IN), math.sqrt(2 / FAN_IN)),
        ("he_normal", None, math.sqrt(2 / FAN_IN)),
        ("lecun_normal", 2 * math.sqrt(1 / FAN_IN) / 0.87962566103423978, math.sqrt(1 / FAN_IN)),
        ("torch_default", 1 / math.sqrt(FAN_IN), 1 / math.sqrt(3 * FAN_IN)),
    ],
)
def test_kernel_initializers_follow_their_published_definitions(
    initializer: str, bound: float | None, std: float
) -> None:
    spec = MLPSpec("init", FAN_IN, (), FAN_OUT, (), "linear", kernel_initializer=initializer)
    kernel = init_params(spec, 0)["dense_0/kernel"].astype(np.float64)
    # 120,000 samples: the sample std is within 1% of the true one with overwhelming probability.
    assert kernel.std() == pytest.approx(std, rel=0.01)
    assert abs(kernel.mean()) < 0.01 * std
    if bound is not None:
        assert np.abs(kernel).max() <= bound * (1 + 1e-6)
        assert np.abs(kernel).max() > 0.99 * bound  # the whole range is used


def test_bias_initializers() -> None:
    zeros = MLPSpec("z", 9, (), 4, (), "linear")
    torchish = MLPSpec("t", 9, (), 4000, (), "linear", bias_initializer="torch_default")
    assert not init_params(zeros, 0)["dense_0/bias"].any()
    bias = init_params(torchish, 0)["dense_0/bias"]
    assert np.abs(bias).max() <= 1 / 3 and np.abs(bias).max() > 0.33


def test_check_params_names_the_culprit() -> None:
    spec = get_model("digits_mlp")
    good = init_params(spec, 0)
    with pytest.raises(ParamError, match=r"missing \['dense_1/bias'\]"):
        check_params(spec, {k: v for k, v in good.items() if k != "dense_1/bias"})
    with pytest.raises(ParamError, match=r"unexpected \['dense_9/kernel'\]"):
        check_params(spec, {**good, "dense_9/kernel": np.zeros(3)})
    with pytest.raises(ParamError, match=r"'dense_0/kernel' has shape \(64, 63\).*needs \(64, 64\)"):
        check_params(spec, {**good, "dense_0/kernel": np.zeros((64, 63))})
    with pytest.raises(ParamError, match=r"'dense_2/bias' contains NaN"):
        check_params(spec, {**good, "dense_2/bias": np.full(10, np.nan)})
    with pytest.raises(ParamError, match=r"'dense_2/bias' has dtype <U1"):
        check_params(spec, {**good, "dense_2/bias": np.array(["a"] * 10)})
    assert check_params(spec, {k: v.astype(np.float64) for k, v in good.items()})["dense_0/kernel"].dtype == np.float32


def test_a_bias_right_before_a_batchnorm_has_a_zero_gradient() -> None:
    """torch's Conv2d has a bias by default, and users put a BatchNorm after it: the bias shifts the
    batch's mean by itself, which the BatchNorm subtracts, so its exact gradient is zero — unless the
    BatchNorm is frozen in inference mode, normalising with its running statistics."""
    from dataclasses import replace

    from spec import reference as ref
    from spec.cases import perturbed_params
    from spec.layers import Act, BatchNorm, Conv2D, Dense, Flatten
    from spec.models import CNNSpec

    spec = CNNSpec("conv_bias_bn", (8, 8, 1), (Conv2D(3, 3), BatchNorm(), Act("relu"), Flatten(), Dense(4)), "softmax")
    frozen = replace(spec, name="frozen_bn", frozen=("conv_0", "batchnorm_0"))
    assert param_specs(spec)["conv_0/bias"].zero_gradient and not param_specs(frozen)["conv_0/bias"].zero_gradient
    params = perturbed_params(spec, 0)
    x, targets = spec.example_batch(8, 0)
    targets = np.eye(4)[targets]
    grads = ref.numerical_gradient(
        spec, params, x, targets, "categorical_crossentropy", ["conv_0/bias", "conv_0/kernel"]
    )
    assert np.abs(grads["conv_0/bias"]).max() < 1e-8 * np.abs(grads["conv_0/kernel"]).max()
    # with the BatchNorm on its running statistics, the same bias moves the loss
    assert (
        np.abs(
            ref.numerical_gradient(frozen, params, x, targets, "categorical_crossentropy", ["conv_0/bias"])[
                "conv_0/bias"
            ]
        ).max()
        > 1e-4
    )
