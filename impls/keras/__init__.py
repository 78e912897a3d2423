"""Keras 3 backend on TensorFlow: Keras layers and ``keras.Model``, NHWC images, ``tf.GradientTape``.

Keras chooses its backend once per process from ``KERAS_BACKEND``; this package needs TensorFlow, so
it sets that variable before Keras is first imported and refuses to run on any other Keras backend.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from impls.keras.backend import BACKEND, KerasBackend

__all__ = ["BACKEND", "KerasBackend"]
