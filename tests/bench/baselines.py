"""The minimal train step a user would write by hand in each framework, as a yardstick for ours.

The MNIST MLP (784-512-10, batch 128, RMSprop lr 1e-3, cross-entropy from logits), compiled the
idiomatic way: ``torch.compile`` of model and optimizer step; ``tf.function(jit_compile=True)`` around
a ``GradientTape`` step of a Keras model; ``jax.jit`` of a pure function with Optax and donated state.
Each builder returns a no-argument callable that runs one step on a device-resident batch, passed to
the compiled step as its arguments (a real loop feeds a new batch each step; a batch captured as a
constant saved Keras ~0.06 ms), and returns the loss as a Python float (which waits for the device).
Frameworks are imported inside each builder, so this module loads without any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

BATCH, INPUTS, HIDDEN, CLASSES = 128, 784, 512, 10
LEARNING_RATE, RHO, EPSILON = 1e-3, 0.9, 1e-7


def torch_step() -> Callable[[], float]:
    import torch
    import torch.nn.functional as F

    model = torch.nn.Sequential(torch.nn.Linear(INPUTS, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES))
    optimizer = torch.optim.RMSprop(model.parameters(), lr=LEARNING_RATE, alpha=RHO, eps=EPSILON)
    x, y = torch.rand(BATCH, INPUTS), torch.randint(0, CLASSES, (BATCH,))

    @torch.compile
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return lambda: step(x, y).item()


def keras_step() -> Callable[[], float]:
    import keras
    import tensorflow as tf

    model = keras.Sequential(
        [keras.Input((INPUTS,)), keras.layers.Dense(HIDDEN, activation="relu"), keras.layers.Dense(CLASSES)]
    )
    optimizer = keras.optimizers.RMSprop(LEARNING_RATE, rho=RHO, epsilon=EPSILON)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.uniform((BATCH, INPUTS))
    y = tf.random.uniform((BATCH,), 0, CLASSES, dtype=tf.int64)

    @tf.function(jit_compile=True)
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda: float(step(x, y))


def jax_step() -> Callable[[], float]:
    import jax
    import jax.numpy as jnp
    import optax

    keys = jax.random.split(jax.random.key(0), 3)
    params = {
        "w1": jax.random.normal(keys[0], (INPUTS, HIDDEN)) * 0.05,
        "b1": jnp.zeros(HIDDEN),
        "w2": jax.random.normal(keys[1], (HIDDEN, CLASSES)) * 0.05,
        "b2": jnp.zeros(CLASSES),
    }
    optimizer = optax.rmsprop(LEARNING_RATE, decay=RHO, eps=EPSILON)
    x = jax.random.uniform(keys[2], (BATCH, INPUTS))
    y = jnp.arange(BATCH) % CLASSES

    def loss_fn(p: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        logits = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(p: dict, state: optax.OptState, x: jax.Array, y: jax.Array) -> tuple:
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    carry = [params, optimizer.init(params)]

    def run() -> float:
        carry[0], carry[1], loss = step(carry[0], carry[1], x, y)
        return float(loss)

    return run


# by engine (spec.backend.engine_of): Keras's hand-written step is TensorFlow's
BASELINES: dict[str, Callable[[], Callable[[], float]]] = {
    "torch": torch_step,
    "tensorflow": keras_step,
    "jax": jax_step,
}


def matmul(engine: str, size: int) -> Callable[[], float]:
    """A float32 ``size``×``size`` matmul in the engine's fast path, for the machine's peak FLOP/s."""
    if engine == "torch":
        import torch

        a, b = torch.rand(size, size), torch.rand(size, size)
        return lambda: float(torch.mm(a, b)[0, 0])
    if engine == "tensorflow":
        import tensorflow as tf

        a, b = tf.random.uniform((size, size)), tf.random.uniform((size, size))
        mm = tf.function(lambda: tf.linalg.matmul(a, b)[0, 0], jit_compile=True)
        return lambda: float(mm())
    import jax
    import jax.numpy as jnp

    a = jax.random.uniform(jax.random.key(1), (size, size), jnp.float32)
    b = jax.random.uniform(jax.random.key(2), (size, size), jnp.float32)
    mm = jax.jit(lambda a, b: (a @ b)[0, 0])
    return lambda: float(mm(a, b))
