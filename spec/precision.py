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

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from spec.layers import Activation
from spec.models import ModelSpec, TransformerSpec
from spec.params import Precision, param_specs


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


@dataclass(frozen=True)
class LossScale:
    """Dynamic loss scaling, as every backend trains a ``mixed_float16`` model (torch's
    ``GradScaler``, Keras's ``LossScaleOptimizer``, jmp's ``DynamicLossScale`` for Optax): the loss is
    multiplied by ``scale`` before backpropagation, so that small float16 gradients do not flush to
    zero, and the gradients divided by it after; a step whose gradients overflow is skipped and
    halves the scale, and ``growth_interval`` finite steps in a row double it. The frameworks'
    defaults differ (initial scale 2¹⁶ torch, 2¹⁵ Keras, none in jmp); each backend is given these."""

    initial: float = 2.0**15
    growth_interval: int = 2000
    factor: float = 2.0  # growth; the backoff is its inverse, as Keras fixes both


LOSS_SCALE = LossScale()


# --- mixed precision ------------------------------------------------------------------------------

# Unit roundoff of each low-precision format: 2⁻ᵖ for p significand bits (bfloat16 8, float16 11).
UNIT_ROUNDOFF: dict[str, float] = {"mixed_bfloat16": 2.0**-8, "mixed_float16": 2.0**-11}
# The layouts of the tensors that enter a matrix product or a convolution (spec.params.LAYOUTS)
PRODUCT_LAYOUTS = frozenset(
    {"dense", "conv", "conv_transpose", "recurrent", "embedding", "attention_in", "attention_out"}
)


def rounding_depth(spec: ModelSpec) -> int:
    """How many products a mixed-precision model rounds its values through, at most: one per
    weight tensor that enters a matrix product or convolution (a kernel, a recurrent kernel, an
    attention projection, an embedding table). Each rounds its inputs and weights to the low
    format, so the forward error grows with it (an upper bound on the longest chain: parallel
    projections and a shortcut count too)."""
    return sum(1 for info in param_specs(spec).values() if info.layout in PRODUCT_LAYOUTS)


def per_tensor_norm_errors(
    spec: ModelSpec, actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """‖actual − expected‖₂ over ‖expected‖₂ per tensor (a tensor whose exact gradient is zero:
    over the largest norm of all). Norm-wise, as mixed-precision gradients are judged: at the low
    formats' resolution some ReLU inputs of every batch lie within rounding of their kink, and the
    element a flipped unit feeds jumps, while the tensor as a whole moves by that unit's share."""
    infos = param_specs(spec)
    norms = {name: float(np.linalg.norm(value)) for name, value in expected.items()}
    largest = max(norms.values(), default=0.0)
    errors = {}
    for name, value in expected.items():
        scale = largest if infos[name].zero_gradient else norms[name]
        difference = float(np.linalg.norm(np.asarray(actual[name], np.float64) - value))
        errors[name] = difference / scale if scale > 0 else difference
    return errors


@cache
def cpu_info(field: str) -> str | None:
    """The first CPU's ``field`` in Linux's /proc/cpuinfo ("model name", "flags"); ``None`` where
    Linux does not tell."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == field:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags Linux lists for this CPU (none where it does not tell)."""
    return frozenset((cpu_info("flags") or "").split())


def tensorflow_runs_bfloat16_in_onednn() -> bool:
    """Whether TensorFlow hands bfloat16 ops to oneDNN here: on a CPU with bfloat16 instructions
    (AVX512_BF16, which AMX CPUs have too), unless ``TF_ENABLE_ONEDNN_OPTS=0``. Measured on softmax:
    float32 inside on an AVX512_BF16 EPYC, bfloat16 along the way with the variable at 0 or on an
    AVX2 EPYC."""
    return "avx512_bf16" in cpu_flags() and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"


@dataclass(frozen=True)
class MixedOp:
    """An operation of a mixed-precision model, and the dtype each framework computes it in when
    its inputs are in the low format: ``float32`` (rounded to the format once, at the end, if its
    output is low) or ``low`` (rounded along the way). Read from the sources, and measured by
    ``tests/test_mixed_ops.py`` on tiny tensors with each framework's own mixed precision."""

    torch: str  # under torch.autocast on a CPU
    keras: str  # under a mixed_* dtype policy
    jax: str  # Flax NNX modules with a low compute dtype, Optax
    source: str
    # Keras's answer in bfloat16 where TensorFlow runs bfloat16 in oneDNN, if it differs
    keras_onednn_bfloat16: str | None = field(default=None, kw_only=True)
    # Keras hands the operation to its backend's own kernel: Keras on torch or JAX computes it as
    # that engine does (keras-torch as torch, keras-jax as jax)
    engine_kernel: bool = field(default=False, kw_only=True)

    def computed_in(self, backend: str, precision: Precision) -> str:
        """The answer for executor ``backend`` in ``precision`` on this machine (Keras's on any of its
        backends; TensorFlow's oneDNN kernels for Keras on TensorFlow)."""
        from spec.backend import KERAS_ENGINES, engine_of, framework_of  # spec.backend imports this module

        if self.engine_kernel and backend in KERAS_ENGINES and backend != "keras":
            backend = engine_of(backend)
        onednn = precision == "mixed_bfloat16" and backend == "keras" and tensorflow_runs_bfloat16_in_onednn()
        if onednn and self.keras_onednn_bfloat16 is not None:
            return self.keras_onednn_bfloat16
        answer: str = getattr(self, framework_of(backend))
        return answer


MIXED_OPS: dict[str, MixedOp] = {
    "matmul": MixedOp("low", "low", "low", "autocast's lower-precision list; Dense's and nnx.Linear's compute dtype"),
    "cross_entropy": MixedOp(
        "float32",
        "float32",
        "low",
        "autocast's float32 list (aten/src/ATen/autocast_mode.cpp); keras/src/losses/loss.py (a Loss computes in "
        "floatx); optax/losses/_classification.py computes in the logits' dtype (triptych casts them to float32)",
    ),
    "softmax": MixedOp(
        "float32",
        "low",
        "low",
        "in no CPU autocast list (its output keeps the input's dtype), but ATen's CPU kernel accumulates a "
        "bfloat16 or float16 input in float32 (measured); TensorFlow's and XLA's compute in the input's dtype, "
        "but for TensorFlow's oneDNN kernel of a bfloat16 softmax on a CPU with AVX512_BF16 (measured); Keras "
        "calls its backend's softmax (keras/src/backend/torch/nn.py: torch's, a float16 one cast to float32 first)",
        keras_onednn_bfloat16="float32",
        engine_kernel=True,
    ),
    "layer_norm": MixedOp(
        "float32",
        "float32",
        "float32",
        "in no CPU autocast list, but ATen's CPU kernel accumulates in float32 (measured); keras/src/ops/nn.py "
        "layer_normalization; flax/nnx/nn/normalization.py _compute_stats",
    ),
    "batch_norm_statistics": MixedOp(
        "float32",
        "float32",
        "float32",
        "ATen's batch_norm accumulates a low batch in float32; keras/src/layers/normalization/"
        "batch_normalization.py upcasts; flax/nnx/nn/normalization.py _compute_stats",
    ),
    "batch_norm_evaluation": MixedOp(
        "float32",
        "float32",
        "low",
        "float32 running statistics in ATen's kernel and in Keras; Flax casts them to the compute dtype "
        "(promote_dtype in nnx.BatchNorm.__call__)",
    ),
    "embedding": MixedOp(
        "float32", "low", "low", "F.embedding in no autocast list; Keras's Embedding and nnx.Embed cast the rows"
    ),
    "optimizer_state": MixedOp(
        "float32", "float32", "float32", "each optimizer's moments follow its float32 variables"
    ),
}
