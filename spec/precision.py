"""What a float64 build of each framework really computes: the float64 witnesses' known shortfalls.

A backend built with ``precision="float64"`` (:meth:`spec.backend.Backend.build`) is a second
oracle beside the judge: its autodiff gives every gradient where the judge's finite differences are
too costly. On most models it agrees with the judge to float64 rounding (≤ 5e-15 of the largest
output, measured on every case). A few framework operations do not compute in float64 when asked
to; each is a :class:`Shortfall` here, found by the witness tests and measured, and a case that
uses one is judged with the ``witness_shortfall`` tolerances — below the same models' float32
errors, far above float64's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from spec.layers import Activation
from spec.models import ModelSpec, TransformerSpec
from spec.params import param_specs


def activation_kinds(spec: ModelSpec) -> set[str]:
    """Every activation a spec names, by kind: ``relu``, ``gelu``…"""
    return {activation.kind for activation in spec.parts(Activation)}


@dataclass(frozen=True)
class Shortfall:
    """An operation a framework computes below float64 in a float64 model."""

    backend: str
    what: str
    source: str  # where the framework does it
    measured: str  # its size, as measured here
    applies: Callable[[ModelSpec], bool]


SHORTFALLS: tuple[Shortfall, ...] = (
    Shortfall(
        "keras",
        "LeakyReLU's slope: TensorFlow's LeakyRelu kernel takes alpha as a float32 attribute, so a "
        "slope of 0.2 is 0.20000000298 in float64",
        "tensorflow/python/ops/nn_ops.py, leaky_relu → gen_nn_ops.leaky_relu(alpha=...)",
        "3.8e-9 of the largest output on 1,000 N(0, 1) inputs",
        lambda spec: "leaky_relu" in activation_kinds(spec),
    ),
    Shortfall(
        "keras",
        "GELU: TensorFlow's float64 erfc (exact form) and tanh (approximate form) kernels",
        "tensorflow/python/ops/nn_ops.py, gelu",
        "1.6e-9 (exact) and 2.9e-10 (tanh) of the largest output on 1,000 N(0, 1) inputs",
        lambda spec: "gelu" in activation_kinds(spec),
    ),
    Shortfall(
        "keras",
        "constants cast from Python floats: keras.ops.cast, like tf.cast, makes a float32 tensor "
        "first (tf.cast(0.01, tf.float64) is 0.009999999776482582) — the L2 factor "
        "(regularizers.L2.__call__) and MultiHeadAttention's 1/√key_dim (_compute_attention)",
        "keras/src/regularizers/regularizers.py; keras/src/layers/attention/multi_head_attention.py",
        "2.2e-8 of the L2 term; up to 7.4e-9 of the largest Transformer logit",
        lambda spec: spec.kernel_l2 > 0 or isinstance(spec, TransformerSpec),
    ),
)

# ... and in a float64 model's native optimizer, whatever the model
OPTIMIZER_SHORTFALLS: tuple[Shortfall, ...] = (
    Shortfall(
        "keras",
        "the optimizer's hyperparameters: the learning rate is a keras.config.floatx() (float32) "
        "variable, and momentum and the βs are cast from Python floats with ops.cast",
        "keras/src/optimizers/base_optimizer.py (the learning_rate Variable); sgd.py, adam.py (update_step)",
        "5e-10 of the parameters after one SGD step (digits_mlp)",
        lambda spec: True,
    ),
)


def shortfalls(spec: ModelSpec, backend: str, *, optimizer: bool = False) -> list[Shortfall]:
    """The shortfalls a float64 build of ``spec`` on ``backend`` runs into (``optimizer``: training
    it with its native optimizer too)."""
    found = SHORTFALLS + (OPTIMIZER_SHORTFALLS if optimizer else ())
    return [s for s in found if s.backend == backend and s.applies(spec)]


def witness_check(spec: ModelSpec, *backends: str, gradients: bool = False, optimizer: bool = False) -> str:
    """The tolerance entry (:mod:`spec.tolerances`) for float64 builds of ``spec`` on ``backends``:
    ``witness`` for outputs, losses and parameters against the judge (``optimizer``: after native
    optimizer steps), ``witness_agreement`` for two builds' gradients (``gradients``), each with
    ``_shortfall`` where a build runs into a :class:`Shortfall`."""
    check = "witness_agreement" if gradients else "witness"
    found = any(shortfalls(spec, b, optimizer=optimizer) for b in backends)
    return f"{check}_shortfall" if found else check


def per_tensor_errors(
    spec: ModelSpec, actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """max |actual − expected| over each tensor, relative to the tensor's largest |expected| — or,
    for a tensor whose exact gradient is zero (:attr:`spec.params.ParamInfo.zero_gradient`: all it
    holds is rounding), to the largest |expected| of all the tensors."""
    infos = param_specs(spec)
    largest = max(float(np.abs(value).max(initial=0.0)) for value in expected.values())
    errors = {}
    for name, value in expected.items():
        scale = largest if infos[name].zero_gradient else float(np.abs(value).max(initial=0.0))
        difference = float(np.abs(np.asarray(actual[name], np.float64) - value).max(initial=0.0))
        errors[name] = difference / scale if scale > 0 else difference
    return errors
