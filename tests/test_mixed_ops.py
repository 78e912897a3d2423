"""What each framework computes in float32 under its own mixed precision (:data:`spec.precision.MIXED_OPS`),
measured on tiny tensors: an operation's output dtype where that is the question (a loss, an
embedding, the optimizer's state), else its values — an operation computed in float32 and rounded
to the low format once agrees with the exact result rounded once on nearly every element, one
computed in the format does not."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from spec.backend import Backend
from spec.params import MIXED_PRECISIONS, Precision, compute_dtype
from spec.precision import MIXED_OPS

ROWS, FEATURES, EPSILON = 64, 48, 1e-3
# Rounded once, an output differs from the exact result rounded once only where the two straddle a
# rounding boundary (measured: at most 0.33% of the elements here); rounded along the way, on 21%
# to 57% (JAX's evaluation-mode BatchNorm, Keras's and JAX's softmax).
ROUNDED_ONCE = 0.05


def inputs(seed: int = 0) -> np.ndarray:
    """Values with a mean well off zero, so that statistics computed in the low format round visibly."""
    return np.random.default_rng(seed).normal(3.0, 1.5, (ROWS, FEATURES))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layer_norm(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + EPSILON)


RUNNING_MEAN, RUNNING_VARIANCE = 2.5, 1.7  # the running statistics of the evaluation-mode probe


def batch_norm_evaluation(x: np.ndarray) -> np.ndarray:
    return (x - RUNNING_MEAN) / np.sqrt(RUNNING_VARIANCE + EPSILON)


def rounded_once(output: np.ndarray, exact: np.ndarray, to_low: Callable[[np.ndarray], np.ndarray]) -> str:
    """``float32`` where ``output`` (the framework's, in the low format) is ``exact`` rounded once, on
    all but a rounding boundary's share of the elements; else ``low``."""
    return "float32" if np.mean(output != to_low(exact)) < ROUNDED_ONCE else "low"


def statistics_in(measured: np.ndarray, exact: np.ndarray) -> str:
    """``float32`` where batch statistics are float32-close to the exact ones (of the low inputs)."""
    return "float32" if np.abs(measured - exact).max() <= 1e-5 * np.abs(exact).max() else "low"


def kind_of(dtype: str) -> str:
    return "float32" if dtype == "float32" else "low"


def torch_ops(precision: Precision) -> dict[str, str]:
    import torch
    import torch.nn.functional as F

    low = {"bfloat16": torch.bfloat16, "float16": torch.float16}[compute_dtype(precision)]

    def to_low(a: np.ndarray) -> np.ndarray:
        return torch.from_numpy(a).to(low).double().numpy()

    def dtype_kind(tensor: torch.Tensor) -> str:
        return kind_of(str(tensor.dtype).removeprefix("torch."))

    x = torch.from_numpy(inputs()).to(low)
    exact = x.double().numpy()  # the low inputs' exact values
    found = {}
    with torch.autocast("cpu", dtype=low):
        linear = torch.nn.Linear(FEATURES, 4)
        logits = linear(x.float())
        found["matmul"] = dtype_kind(logits)
        found["cross_entropy"] = dtype_kind(F.cross_entropy(logits, torch.zeros(ROWS, dtype=torch.long)))
        found["softmax"] = rounded_once(F.softmax(x, -1).double().numpy(), softmax(exact), to_low)
        ones, zeros = torch.ones(FEATURES), torch.zeros(FEATURES)
        normed = F.layer_norm(x, (FEATURES,), ones, zeros, EPSILON)
        found["layer_norm"] = rounded_once(normed.double().numpy(), layer_norm(exact), to_low)
        norm = torch.nn.BatchNorm1d(FEATURES, eps=EPSILON, momentum=1.0)  # running = this batch's
        norm(x)
        found["batch_norm_statistics"] = statistics_in(norm.running_mean.double().numpy(), exact.mean(0))
        norm.eval()
        norm.running_mean.fill_(RUNNING_MEAN)
        norm.running_var.fill_(RUNNING_VARIANCE)
        with torch.no_grad():
            evaluated = norm(x).double().numpy()
        found["batch_norm_evaluation"] = rounded_once(evaluated, batch_norm_evaluation(exact), to_low)
        rows = torch.nn.Embedding(10, 4)(torch.arange(10))
        found["embedding"] = dtype_kind(rows)
        adam = torch.optim.Adam(linear.parameters())
        linear(x.float()).sum().backward()
    adam.step()
    found["optimizer_state"] = dtype_kind(adam.state[linear.weight]["exp_avg"])
    return found


def keras_ops(precision: Precision) -> dict[str, str]:
    import keras

    low = compute_dtype(precision)

    def to_low(a: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(a, low), "float64"))

    def numpy(tensor: object) -> np.ndarray:
        return keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float64"))

    def dtype_kind(tensor: keras.KerasTensor | keras.Variable) -> str:
        return kind_of(keras.backend.standardize_dtype(tensor.dtype))

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        dense = keras.layers.Dense(4)
        norm = keras.layers.LayerNormalization(epsilon=EPSILON)
        batch_norm = keras.layers.BatchNormalization(momentum=0.0, epsilon=EPSILON)  # moving = this batch's
        embedding = keras.layers.Embedding(10, 4)
        softmax_layer = keras.layers.Softmax()
    finally:
        keras.config.set_dtype_policy(previous)
    x = keras.ops.cast(inputs(), low)
    exact = numpy(x)
    found = {"matmul": dtype_kind(dense(keras.ops.cast(x, "float32")))}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(np.zeros(ROWS), dense(x))
    found["cross_entropy"] = dtype_kind(loss)
    found["softmax"] = rounded_once(numpy(softmax_layer(x)), softmax(exact), to_low)
    found["layer_norm"] = rounded_once(numpy(norm(x)), layer_norm(exact), to_low)
    batch_norm(x, training=True)
    found["batch_norm_statistics"] = statistics_in(numpy(batch_norm.moving_mean), exact.mean(0))
    batch_norm.moving_mean.assign(np.full(FEATURES, RUNNING_MEAN))
    batch_norm.moving_variance.assign(np.full(FEATURES, RUNNING_VARIANCE))
    evaluated = numpy(batch_norm(x, training=False))
    found["batch_norm_evaluation"] = rounded_once(evaluated, batch_norm_evaluation(exact), to_low)
    found["embedding"] = dtype_kind(embedding(np.arange(10)))
    adam = keras.optimizers.Adam()
    adam.build(dense.trainable_variables)
    found["optimizer_state"] = dtype_kind(adam.variables[-1])
    return found


def jax_ops(precision: Precision) -> dict[str, str]:
    import jax.numpy as jnp
    import optax
    from flax import nnx

    low = jnp.dtype(compute_dtype(precision))

    def to_low(a: np.ndarray) -> np.ndarray:
        return np.asarray(jnp.asarray(a, jnp.float32).astype(low), np.float64)

    rngs = nnx.Rngs(0)
    x = jnp.asarray(inputs(), jnp.float32).astype(low)
    exact = np.asarray(x, np.float64)
    linear = nnx.Linear(FEATURES, 4, dtype=low, rngs=rngs)
    found = {"matmul": kind_of(str(linear(x.astype(jnp.float32)).dtype))}
    loss = optax.losses.softmax_cross_entropy_with_integer_labels(linear(x), jnp.zeros(ROWS, jnp.int32))
    found["cross_entropy"] = kind_of(str(loss.dtype))
    found["softmax"] = rounded_once(np.asarray(nnx.softmax(x, axis=-1), np.float64), softmax(exact), to_low)
    norm = nnx.LayerNorm(FEATURES, epsilon=EPSILON, use_fast_variance=False, dtype=low, rngs=rngs)
    found["layer_norm"] = rounded_once(np.asarray(norm(x), np.float64), layer_norm(exact), to_low)
    batch_norm = nnx.BatchNorm(FEATURES, momentum=0.0, epsilon=EPSILON, use_fast_variance=False, dtype=low, rngs=rngs)
    batch_norm(x)  # training mode: running = this batch's
    found["batch_norm_statistics"] = statistics_in(np.asarray(batch_norm.mean[...], np.float64), exact.mean(0))
    batch_norm.mean[...] = jnp.full(FEATURES, RUNNING_MEAN)
    batch_norm.var[...] = jnp.full(FEATURES, RUNNING_VARIANCE)
    batch_norm.eval()
    evaluated = np.asarray(batch_norm(x), np.float64)
    found["batch_norm_evaluation"] = rounded_once(evaluated, batch_norm_evaluation(exact), to_low)
    found["embedding"] = kind_of(str(nnx.Embed(10, 4, dtype=low, rngs=rngs)(jnp.arange(10)).dtype))
    optimizer = nnx.Optimizer(linear, optax.adam(1e-3), wrt=nnx.Param)
    found["optimizer_state"] = kind_of(str(optimizer.opt_state[0].mu["kernel"][...].dtype))
    return found


PROBES: dict[str, Callable[[Precision], dict[str, str]]] = {"torch": torch_ops, "keras": keras_ops, "jax": jax_ops}


# bfloat16 in make test; float16, whose answers are the same, in make test-all
FORMATS = [pytest.param(p, marks=[pytest.mark.exhaustive] if p == "mixed_float16" else []) for p in MIXED_PRECISIONS]


@pytest.mark.parametrize("precision", FORMATS)
def test_each_framework_keeps_in_float32_what_the_catalogue_says(backend: Backend, precision: Precision) -> None:
    measured = PROBES[backend.framework](precision)
    expected = {op: facts.computed_in(backend.name, precision) for op, facts in MIXED_OPS.items()}
    assert measured == expected
