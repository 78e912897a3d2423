"""JAX backend: ``flax.nnx`` modules, NHWC images, Optax; compiled with ``jax.jit`` over split state."""

from impls.jax.backend import BACKEND, JaxBackend

__all__ = ["BACKEND", "JaxBackend"]
