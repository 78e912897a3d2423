"""The checks every backend applies to a batch before converting it, so that a wrong shape is never
broadcast or reshaped, an integer image never silently cast and a class id never read past the
logits: :func:`check_inputs` and :func:`check_targets`."""

from __future__ import annotations

from typing import Any

import numpy as np

from spec.errors import BatchError
from spec.losses import takes_class_ids
from spec.models import ModelSpec
from spec.params import Precision, variable_dtype

# dtype names as numpy, JAX and TensorFlow spell them (torch prefixes its own with "torch.")
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def dtype_name(array: Any) -> str:
    """The dtype of a numpy array or of a framework's tensor, by name (``float32``, ``int64`` …)."""
    dtype = array.dtype
    return str(getattr(dtype, "name", None) or dtype).removeprefix("torch.")


def batch_dtype(spec: ModelSpec, precision: Precision) -> str:
    """The dtype a backend converts a checked batch to: token ids stay int32, values take the dtype of
    the model's variables (a mixed-precision model casts them to its compute dtype itself)."""
    return spec.input_dtype if spec.input_dtype == "int32" else variable_dtype(precision)


def check_inputs(spec: ModelSpec, x: Any, *, what: str = "x", shape: tuple[int, ...] | None = None) -> None:
    """Raise :class:`BatchError`, naming the model, unless ``x`` (numpy, or a framework's tensor) is a
    batch its model takes: shape (batch ≥ 1, *``shape``) — ``spec.input_shape`` unless given — of
    float values (any float dtype; a backend computes in its model's precision) or, for a model of token ids
    (:attr:`spec.models.ModelSpec.input_dtype`), integer ids in [0, vocab_size)."""
    expected = tuple(spec.input_shape if shape is None else shape)
    received = tuple(int(n) for n in getattr(x, "shape", ()))
    if len(received) != 1 + len(expected) or received[1:] != expected or received[0] < 1:
        wanted = f"(batch, {', '.join(map(str, expected))})"
        raise BatchError(spec.name, what, f"has shape {received}", f"{wanted} with batch ≥ 1")
    dtype = dtype_name(x)
    if spec.input_dtype == "float32":
        if dtype not in FLOAT_DTYPES:
            allowed = ", ".join(FLOAT_DTYPES)
            raise BatchError(spec.name, what, f"has dtype {dtype}", f"float values ({allowed})")
        return
    if dtype not in INTEGER_DTYPES:
        raise BatchError(spec.name, what, f"has dtype {dtype}", "integer token ids")
    vocab_size: int = getattr(spec, "vocab_size")  # noqa: B009  # every kind with token ids has one
    low, high = _value_range(x)
    if low < 0 or high >= vocab_size:
        raise BatchError(spec.name, what, f"holds token ids in [{low}, {high}]", f"ids in [0, {vocab_size})")


def _value_range(x: Any) -> tuple[int, int]:
    """The smallest and largest value of ``x``, reduced where it lives (numpy, torch and JAX arrays
    have ``min`` and ``max``; a TensorFlow tensor converts to numpy)."""
    values = x if hasattr(x, "min") else np.asarray(x)
    return int(values.min()), int(values.max())


def check_targets(spec: ModelSpec, targets: Any, loss: str) -> None:
    """Raise :class:`BatchError`, naming the model, unless the targets of a loss that takes class ids
    are integer ids in [0, classes): an id past the logits would index out of them (measured: torch raises an
    IndexError and TensorFlow an InvalidArgumentError deep inside their losses; Optax returns NaN for
    an id past the last class and reads −1 as the last class, without a word). The
    shapes of every loss's targets are checked with the logits (:func:`spec.losses.check_target_shape`)."""
    if not takes_class_ids(loss):
        return
    dtype = dtype_name(targets) if hasattr(targets, "dtype") else np.asarray(targets).dtype.name
    if dtype not in INTEGER_DTYPES:
        raise BatchError(spec.name, "targets", f"have dtype {dtype}", f"integer class ids for {loss}")
    if int(np.prod(getattr(targets, "shape", np.shape(targets)))) == 0:
        return
    low, high = _value_range(targets)
    if low < 0 or high >= spec.output_size:
        raise BatchError(
            spec.name, "targets", f"hold class ids in [{low}, {high}]", f"ids in [0, {spec.output_size}) for {loss}"
        )
