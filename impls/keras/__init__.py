"""Keras 3: Keras layers and ``keras.Model``, NHWC images, on whichever backend Keras runs.

Keras chooses its backend once per process from ``KERAS_BACKEND``: TensorFlow unless set (executor
``keras``), or JAX (``keras-jax``) or torch (``keras-torch``); :mod:`impls.keras.engine` holds what
differs between them.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from impls.keras.backend import BACKEND, KerasBackend

__all__ = ["BACKEND", "KerasBackend"]
