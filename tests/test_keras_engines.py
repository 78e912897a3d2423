"""Keras 3 on its three backends — executors ``keras`` (TensorFlow), ``keras-jax`` and ``keras-torch``
run the same ``impls/keras`` code: what differs between them that the contract matrix does not show
by itself. Each test runs on the Keras executor of its pytest process (``make test`` runs one per
Keras backend)."""

from __future__ import annotations

import numpy as np
import pytest

from spec.backend import Backend
from spec.cases import ZOO_CASES
from spec.errors import UnsupportedOption
from spec.models import ZOO
from spec.params import init_params


@pytest.fixture
def keras_backend(backend: Backend) -> Backend:
    if backend.framework != "keras":
        pytest.skip(f"{backend.name} is not Keras")
    return backend


def test_keras_computes_float64_in_float32_off_tensorflow(keras_backend: Backend) -> None:
    """Finding 19: Keras's type promotion turns float64 into float32 on JAX and torch, so those
    executors refuse float64 models, naming the finding; on TensorFlow float64 stays float64. When
    a Keras release keeps float64, this fails: let those executors build float64 again
    (``impls.keras.engine.Engine.float64_refused``)."""
    import keras

    from impls.keras.engine import ENGINE

    spec = ZOO["digits_mlp"]
    downcast = keras.backend.result_type("float64", "float64") == "float32"
    with ENGINE.in_precision("float64"):  # JAX's own float64 switch on, as a float64 model would have it
        x = keras.ops.convert_to_tensor(np.linspace(-1.0, 1.0, 6).reshape(2, 3), dtype="float64")
        tanh_dtype = keras.backend.standardize_dtype(keras.ops.tanh(x).dtype)
        product_dtype = keras.backend.standardize_dtype(keras.ops.matmul(x, keras.ops.transpose(x)).dtype)
    if keras_backend.name == "keras":
        assert not downcast and tanh_dtype == product_dtype == "float64"
        model = keras_backend.build(spec, init_params(spec, 0), precision="float64")
        assert keras_backend.logits(model, ZOO_CASES["digits_mlp"].batch(size=2)[0]).dtype == np.float64
        return
    assert downcast, "Keras now keeps float64 on this backend: finding 19 is fixed"
    assert "float32" in {tanh_dtype, product_dtype}  # JAX: tanh; torch: matmul
    with pytest.raises(UnsupportedOption, match="finding 19"):
        keras_backend.build(spec, init_params(spec, 0), precision="float64")


def test_training_is_compiled_where_keras_s_own_fit_compiles(keras_backend: Backend) -> None:
    """``spec.training.fit`` follows the framework's own loop (``Backend.trains_compiled``): Keras's
    ``Model.fit`` runs a compiled step unless run eagerly — a ``tf.function`` on TensorFlow,
    ``jax.jit`` on JAX — but on torch only under ``jit_compile``, which its ``"auto"`` leaves off."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")  # Keras resolves run_eagerly and jit_compile="auto"
    compiled = not model.run_eagerly and (keras.backend.backend() != "torch" or bool(model.jit_compile))
    assert keras_backend.trains_compiled == compiled


def test_class_ids_are_keras_s_integers_on_its_backend(keras_backend: Backend) -> None:
    """Class ids go in as the widest integer Keras keeps on its backend: its type promotion keeps
    int64 on TensorFlow and makes it int32 on JAX (which has no int64 without x64) and torch."""
    import keras

    from impls.keras.engine import ENGINE

    assert ENGINE.class_ids == keras.backend.result_type("int64")


def test_keras_on_jax_refuses_float16_attention_on_a_cpu_while_jax_cannot_compile_it(keras_backend: Backend) -> None:
    """Finding 16 through Keras: Keras's MultiHeadAttention calls ``jax.nn.dot_product_attention``,
    which fails under ``jax.jit`` on a CPU in float16, so keras-jax refuses a mixed_float16
    Transformer there, naming the finding (the gradients failed with the XLA error before). When JAX
    compiles it, this fails: lift the refusal (``impls.keras.models.attention_fails_in_float16``)."""
    spec = ZOO["transformer_classifier"]
    if keras_backend.name != "keras-jax":
        keras_backend.build(spec, init_params(spec, 0), precision="mixed_float16")  # TensorFlow and torch build it
        return
    import jax
    import jax.numpy as jnp

    if jax.default_backend() != "cpu":
        pytest.skip(f"finding 16 is about XLA:CPU; this JAX runs on {jax.default_backend()}")
    q = jnp.ones((1, 4, 2, 8), jnp.float16)
    with pytest.raises(ValueError, match="F16_F16_F32"):
        jax.jit(jax.nn.dot_product_attention)(q, q, q)
    with pytest.raises(UnsupportedOption, match="finding 16"):
        keras_backend.build(spec, init_params(spec, 0), precision="mixed_float16")
