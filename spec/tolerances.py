"""The one table of tolerances, keyed by (check, dtype, device).

Every entry says why it has its size. Errors are measured as in :func:`max_scaled_error` (forward) or as the
relative error of directional derivatives (:class:`spec.reference.DirectionalCheck`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """``|actual − expected| ≤ atol + rtol·scale``, where ``scale`` is ``|expected|`` element by element,
    or with ``per_example`` the largest ``|expected|`` of the element's example (its row): for outputs
    that are sums with cancellation, whose rounding has the size of the terms, not of the result.
    With ``of_magnitude`` the scale is the output's magnitude instead of ``|expected|``: the sum of
    the absolute terms the judge's last product adds up (:func:`spec.reference.output_magnitude`),
    the size rounding errors have even where the terms cancel to an output near 0."""

    rtol: float
    atol: float
    why: str
    per_example: bool = False
    of_magnitude: bool = False


TOLERANCES: dict[tuple[str, str, str], Tolerance] = {
    # float32 vs float64 forward: each output is a dot product of up to ~800 terms; float32 rounding
    # (eps 1.2e-7) accumulates to ~sqrt(n)·eps relative to the sum of |terms| (~3e-6 for n=800, ~1e-5
    # for worst-case sums). Measured worst case here on the zoo MLPs: ~1e-6.
    ("forward", "float32", "cpu"): Tolerance(rtol=1e-4, atol=1e-5, why="float32 rounding in dot products"),
    # Same arithmetic on a GPU with TF32 off and JAX precision 'highest'; reductions may be ordered
    # differently (parallel trees), which changes the rounding but not its size.
    ("forward", "float32", "gpu"): Tolerance(rtol=1e-4, atol=1e-5, why="float32, TF32 off"),
    # A deep network in training mode (ResNet-18: 20 BatchNorms on batch statistics): each BatchNorm
    # divides its input's float32 rounding by the batch's standard deviation, which can be ten times
    # smaller than the values it rounds, so an element near zero of the output carries rounding of
    # the size of the others. Measured worst here (batch 16, outputs of size 3–5): 3.4e-5 absolute
    # (Keras), 9e-5 (torch); a wrong BatchNorm convention (ε, biased variance, momentum) moves
    # outputs by 1e-3 or more.
    ("forward_deep_batchnorm", "float32", "cpu"): Tolerance(rtol=1e-4, atol=2e-4, why="rounding / batch std, ×20"),
    ("forward_deep_batchnorm", "float32", "gpu"): Tolerance(rtol=1e-4, atol=2e-4, why="rounding / batch std, ×20"),
    # A deep network in evaluation mode whose running statistics do not normalise (a freshly built
    # ResNet-50: mean 0, variance 1, so each of its 16 residual additions grows the activations):
    # logits reach hundreds, and a logit near zero is a sum that cancels, rounded at the size of its
    # terms. Measured on resnet50_finetune (16 jittered digits, perturbed statistics; torch, Keras,
    # JAX): up to 1.6e-3 absolute on logits of up to 841, at most 2.0e-6 of each example's largest
    # logit — float32 rounding; so the error is measured relative to each example's largest logit.
    ("forward_deep", "float32", "cpu"): Tolerance(
        rtol=1e-4, atol=1e-5, why="rounding at the logits' scale", per_example=True
    ),
    ("forward_deep", "float32", "gpu"): Tolerance(
        rtol=1e-4, atol=1e-5, why="rounding at the logits' scale", per_example=True
    ),
    # Directional derivatives of float32 gradients vs float64 central differences: backprop adds one
    # more matmul of rounding per layer, and the projection on a random direction averages it;
    # measured ~1e-6 on the zoo MLPs.
    ("gradient", "float32", "cpu"): Tolerance(rtol=1e-4, atol=0.0, why="float32 backprop rounding"),
    ("gradient", "float32", "gpu"): Tolerance(rtol=1e-4, atol=0.0, why="float32 backprop, TF32 off"),
    # Two float32 backends against each other, element by element: each is within float32 rounding
    # of the truth, so their difference is at most twice that; gradients are scaled by their own
    # magnitude (an element far smaller than the largest may be pure rounding noise).
    ("cross_backend_forward", "float32", "cpu"): Tolerance(rtol=2e-4, atol=2e-5, why="2 × forward"),
    ("cross_backend_forward", "float32", "gpu"): Tolerance(rtol=2e-4, atol=2e-5, why="2 × forward"),
    ("cross_backend_gradient", "float32", "cpu"): Tolerance(rtol=2e-4, atol=1e-6, why="2 × float32 backprop"),
    ("cross_backend_gradient", "float32", "gpu"): Tolerance(rtol=2e-4, atol=1e-6, why="2 × float32 backprop"),
    # Optimizer steps from identical float32 params and gradients vs the float64 judge: each step
    # rounds θ to float32 (≤ 6e-8·|θ|) and the update's own arithmetic adds as much; over 5 steps
    # measured ≤ 1e-7 absolute on the digits MLP. A wrong formula moves θ by a sizeable fraction of
    # an update (1e-4 to 1e-2 here), which tests/test_optimizers.py checks stays far above this.
    ("optimizer_step", "float32", "cpu"): Tolerance(rtol=1e-5, atol=1e-6, why="float32 rounding of θ per step"),
    ("optimizer_step", "float32", "gpu"): Tolerance(rtol=1e-5, atol=1e-6, why="float32 rounding of θ per step"),
    # Training trajectories across backends (same init, batches and optimizer): both follow float32
    # gradients whose rounding differs (~1e-6 relative), and each step feeds the next, so differences
    # grow with the number of steps; measured ~1e-6 on 30 steps of the digits MLP.
    ("trajectory", "float32", "cpu"): Tolerance(rtol=1e-4, atol=1e-5, why="compounded float32 rounding"),
    ("trajectory", "float32", "gpu"): Tolerance(rtol=1e-4, atol=1e-5, why="compounded float32 rounding"),
    # The float64 witnesses (spec.precision) against the judge, forward and loss: float64 rounding
    # (eps 1.1e-16), grown through up to 50 layers and 20 training-mode BatchNorms; measured ≤ 5e-15
    # of each example's largest output on every case and backend. Any float32 step in a float64
    # build shows as ≥ 1e-9.
    ("witness", "float64", "cpu"): Tolerance(rtol=1e-11, atol=1e-13, why="float64 rounding", per_example=True),
    ("witness", "float64", "gpu"): Tolerance(rtol=1e-11, atol=1e-13, why="float64 rounding", per_example=True),
    # A float64 build that runs into a measured shortfall (spec.precision.SHORTFALLS: Keras's
    # float32 constants and LeakyReLU slope, TensorFlow's float64 GELU kernels): measured ≤ 7.4e-9
    # of the largest logit (tiny_key_dim); a model computed in float32 throughout is off by 1e-7
    # and more.
    ("witness_shortfall", "float64", "cpu"): Tolerance(
        rtol=3e-8, atol=1e-12, why="4 × the largest shortfall", per_example=True
    ),
    ("witness_shortfall", "float64", "gpu"): Tolerance(
        rtol=3e-8, atol=1e-12, why="4 × the largest shortfall", per_example=True
    ),
    # The judge's finite differences against a float64 witness's gradients: the differences' own
    # error dominates — up to 4e-5 where the step crosses ReLU kinks (measured on
    # digits_conv_autoencoder, the same on all three backends) — so this checks the witness's
    # gradient formulas; witness_agreement checks their precision.
    ("witness_gradient", "float64", "cpu"): Tolerance(rtol=1e-4, atol=0.0, why="finite differences across kinks"),
    ("witness_gradient", "float64", "gpu"): Tolerance(rtol=1e-4, atol=0.0, why="finite differences across kinks"),
    # A backend's float32 gradients against its own float64 witness, per tensor (max |Δ| over the
    # tensor's largest element): float32 backprop rounding, measured ≤ 5.2e-6 on the small cases
    # (tiny_resnet_cifar on Keras) and ≤ 9.6e-7 on resnet50_finetune; the bound of the
    # finite-difference check. Not for networks whose float32 gradients are ill-posed
    # (spec.cases.DEEP_GRADIENTS).
    ("gradient_vs_witness", "float32", "cpu"): Tolerance(rtol=1e-4, atol=0.0, why="float32 backprop rounding"),
    ("gradient_vs_witness", "float32", "gpu"): Tolerance(rtol=1e-4, atol=0.0, why="float32 backprop, TF32 off"),
    # Two float64 witnesses' gradients, per tensor (spec.precision.per_tensor_errors): measured
    # ≤ 1.4e-14 of each tensor's largest element on every small case, 3e-14 on the ResNet-18s; the
    # Keras shortfalls reach 2e-8 (ring_gan's generator: LeakyReLU's float32 slope).
    ("witness_agreement", "float64", "cpu"): Tolerance(rtol=1e-11, atol=0.0, why="float64 backprop rounding"),
    ("witness_agreement", "float64", "gpu"): Tolerance(rtol=1e-11, atol=0.0, why="float64 backprop rounding"),
    ("witness_agreement_shortfall", "float64", "cpu"): Tolerance(rtol=6e-8, atol=0.0, why="3 × the largest shortfall"),
    ("witness_agreement_shortfall", "float64", "gpu"): Tolerance(rtol=6e-8, atol=0.0, why="3 × the largest shortfall"),
    # Mixed precision (bfloat16 or float16 compute, float32 variables), per product a value passes
    # through (spec.precision.rounding_depth): each rounds its inputs and weights to the format, a
    # relative error of up to u each (unit roundoff 2⁻⁸ bfloat16, 2⁻¹¹ float16) — see mixed_tolerance.
    # Outputs, relative to each example's largest magnitude (Σ|w·h| + |b| of the output layer, not
    # the output, which cancels to near 0 in a one-unit regression head: gru_reset_before measured
    # 370·u per product of its output, 0.14·u of its magnitude): measured ≤ 1.3·u per product
    # (batchnorm_cnn in training mode, JAX, float16), ≤ 0.75·u in evaluation mode, over every zoo
    # model and small spec on every backend (witness batches, 2026-12-07).
    ("mixed_forward", "mixed_bfloat16", "cpu"): Tolerance(
        rtol=5 * 2**-8, atol=0.0, why="5u of the magnitude per product", per_example=True, of_magnitude=True
    ),
    ("mixed_forward", "mixed_float16", "cpu"): Tolerance(
        rtol=5 * 2**-11, atol=0.0, why="5u of the magnitude per product", per_example=True, of_magnitude=True
    ),
    ("mixed_forward", "mixed_bfloat16", "gpu"): Tolerance(
        rtol=5 * 2**-8, atol=0.0, why="5u of the magnitude per product", per_example=True, of_magnitude=True
    ),
    ("mixed_forward", "mixed_float16", "gpu"): Tolerance(
        rtol=5 * 2**-11, atol=0.0, why="5u of the magnitude per product", per_example=True, of_magnitude=True
    ),
    # Gradients, norm-wise per tensor (spec.precision.per_tensor_norm_errors) against the float64
    # witness: a kernel's or bias's gradient sums terms over examples and positions that largely
    # cancel, so its relative error is the terms' rounding over a small result, and a BatchNorm in
    # training mode subtracts means again. Measured ≤ 30·u per product in bfloat16 (Keras's
    # avg_pools conv_0 kernel), ≤ 49·u in float16 (tiny_resnet_imagenet's stem BatchNorm, torch and
    # Keras alike), ≤ 5·u on the MLPs. Capped at 0.5 (mixed_tolerance): a zero, halved or
    # sign-flipped gradient fails whatever the depth.
    ("mixed_gradient", "mixed_bfloat16", "cpu"): Tolerance(rtol=64 * 2**-8, atol=0.0, why="64u per product"),
    ("mixed_gradient", "mixed_float16", "cpu"): Tolerance(rtol=64 * 2**-11, atol=0.0, why="64u per product"),
    ("mixed_gradient", "mixed_bfloat16", "gpu"): Tolerance(rtol=64 * 2**-8, atol=0.0, why="64u per product"),
    ("mixed_gradient", "mixed_float16", "gpu"): Tolerance(rtol=64 * 2**-11, atol=0.0, why="64u per product"),
    # Learning rates, in units of the base rate: Keras and Optax evaluate schedules in float32
    # (~1e-7 relative, measured ≤ 1.2e-7); torch in float64. A wrong convention (floor as fraction
    # vs absolute, decay steps counted with or without warm-up) is off by 1e-2 or more.
    ("schedule", "float32", "cpu"): Tolerance(rtol=1e-6, atol=1e-6, why="float32 schedule arithmetic"),
    ("schedule", "float32", "gpu"): Tolerance(rtol=1e-6, atol=1e-6, why="float32 schedule arithmetic"),
}


# How far from a kink (spec.reference.Kink: a ReLU's 0, a max-pool window's tie) every piecewise
# op's input of a batch whose float32 gradients are judged must lie, over the rms of the op's input:
# nearer, float32 rounding may move it across, and the gradient jumps — one unit's share of it, 1e-3
# of a kernel gradient's largest element. Above the largest float32 error measured at any kink
# input of the judged (not deep) cases: 4.0e-6 (torch on cnn_64 and cifar_simple_cnn with oneDNN's
# AVX2 kernels; 2.4e-6 with its AVX-512 ones). A max-pool tie 3.6e-7 from the kink failed CI
# (docs/precision.md, "Shallow networks").
KINK_MARGIN = 5e-6


def tolerance(check: str, dtype: str = "float32", device: str = "cpu") -> Tolerance:
    """The tolerance for ``check`` on ``dtype`` and ``device`` (``cpu`` or ``gpu``; ``cuda:0`` counts as gpu)."""
    kind = "cpu" if device.startswith("cpu") else "gpu"
    try:
        return TOLERANCES[(check, dtype, kind)]
    except KeyError:
        raise KeyError(f"no tolerance for check {check!r}, dtype {dtype!r}, device {kind!r}") from None


# The largest norm-wise gradient error mixed_tolerance allows, whatever the depth (see mixed_gradient).
MIXED_GRADIENT_CAP = 0.5


# Not a tolerance: the error each report shows, relative to each example's largest output magnitude.
RELATIVE_TO_MAGNITUDE = Tolerance(
    rtol=1.0, atol=0.0, why="relative to the magnitude", per_example=True, of_magnitude=True
)


def mixed_tolerance(check: str, precision: str, depth: int, device: str = "cpu") -> Tolerance:
    """The ``mixed_forward`` or ``mixed_gradient`` tolerance for a model whose values pass through
    ``depth`` products (:func:`spec.precision.rounding_depth`): the table's entry per product, times
    the depth (rounding errors of successive products add up, in the worst case), the gradient's
    capped at :data:`MIXED_GRADIENT_CAP`."""
    base = tolerance(check, precision, device)
    rtol = base.rtol * depth
    if check == "mixed_gradient":
        rtol = min(rtol, MIXED_GRADIENT_CAP)
    return replace(base, rtol=rtol, why=f"{base.why} × {depth} products")


def max_scaled_error(
    actual: np.ndarray, expected: np.ndarray, tol: Tolerance, magnitude: np.ndarray | None = None
) -> float:
    """max |actual − expected| / (atol + rtol·scale) (see :class:`Tolerance`): at most 1 means within
    tolerance. ``magnitude``: the outputs' magnitudes, for (and only for) a tolerance ``of_magnitude``."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    if tol.of_magnitude != (magnitude is not None):
        needs = "needs the outputs' magnitude" if tol.of_magnitude else "is relative to the values, not a magnitude"
        raise ValueError(f"the tolerance ({tol.why}) {needs}")
    scale = np.abs(expected) if magnitude is None else np.asarray(magnitude, np.float64)
    if scale.shape != expected.shape:
        raise ValueError(f"magnitude of shape {scale.shape} for outputs of shape {expected.shape}")
    if tol.per_example and scale.ndim > 1:
        scale = scale.reshape(len(scale), -1).max(axis=1).reshape((-1,) + (1,) * (scale.ndim - 1))
    difference, allowed = np.abs(actual - expected), tol.atol + tol.rtol * scale
    # an exact output of zero magnitude (a blank example through zero biases) allows no error: equal
    # is 0, anything else infinitely far
    with np.errstate(divide="ignore"):
        ratio = np.divide(difference, allowed, out=np.zeros_like(difference), where=difference != 0)
    return float(ratio.max(initial=0.0))


def forward_check(*, deep: bool, training: bool) -> str:
    """The tolerance entry for a forward pass against the judge: ``forward``, or for a deep network
    (:attr:`spec.models.ResNetSpec.is_deep`) ``forward_deep_batchnorm`` in training mode and
    ``forward_deep`` in evaluation mode."""
    if not deep:
        return "forward"
    return "forward_deep_batchnorm" if training else "forward_deep"
