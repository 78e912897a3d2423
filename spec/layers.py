"""Framework-neutral layer specs: activations, convolutions, pooling, BatchNorm and the rest.

Every field that the frameworks default differently is explicit here, and each layer documents the
one convention the spec uses. Layer specs are frozen dataclasses validated on construction; a bad
field raises :class:`SpecError` naming it.

Images are NHWC everywhere in the spec (batch, height, width, channels).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spec.errors import SpecError
from spec.validation import check_number, check_positive_int

HIDDEN_ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "linear")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")
GELU_APPROXIMATIONS = ("exact", "tanh")
# Kernel initializers, with their published definitions (fan_in/fan_out of an (in, out) kernel):
#   glorot_uniform   U(±sqrt(6 / (fan_in + fan_out)))          Glorot & Bengio 2010 (Keras default)
#   glorot_normal    N(0, 2 / (fan_in + fan_out))
#   he_uniform       U(±sqrt(6 / fan_in))                       He et al. 2015
#   he_normal        N(0, 2 / fan_in)
#   lecun_normal     truncated N at ±2σ, std 1/sqrt(fan_in)     (Flax default)
#   torch_default    U(±1/sqrt(fan_in)), kaiming_uniform(a=√5)  (torch.nn.Linear default)
KERNEL_INITIALIZERS = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "torch_default",
)
# Bias initializers: zeros (Keras and Flax default) or torch_default, U(±1/sqrt(fan_in)).
BIAS_INITIALIZERS = ("zeros", "torch_default")
# Recurrent-kernel initializers: orthogonal (Keras and Flax: the whole (hidden, gates·hidden) matrix
# has orthonormal rows; Saxe et al. 2014), glorot_uniform, or torch_default (torch initializes every
# recurrent tensor U(±1/sqrt(hidden))).
RECURRENT_INITIALIZERS = ("orthogonal", "glorot_uniform", "torch_default")
# Embedding-table initializers: normal, N(0, 1) (torch's nn.Embedding), or uniform, U(±0.05)
# (Keras's Embedding). (Flax's nnx.Embed draws a truncated normal of variance 1/d_model.)
EMBEDDING_INITIALIZERS = ("normal", "uniform")

_ACTIVATION_SYNTAX = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")


@dataclass(frozen=True)
class Activation:
    """An element-wise activation with its parameters made explicit.

    Parameters are required where frameworks disagree on the default: the leaky ReLU slope (torch 0.01,
    Keras layer 0.3, Keras function 0.2), the ELU alpha, and whether GELU is exact (erf) or the tanh
    approximation (torch and Keras: exact; JAX/Flax: tanh).
    """

    kind: str
    negative_slope: float | None = None  # leaky_relu only
    alpha: float | None = None  # elu only
    approximate: str | None = None  # gelu only: "exact" or "tanh"

    def __post_init__(self) -> None:
        if self.kind not in HIDDEN_ACTIVATIONS:
            raise SpecError("activation", self.kind, HIDDEN_ACTIVATIONS)
        _require_iff(self, "negative_slope", self.kind == "leaky_relu")
        _require_iff(self, "alpha", self.kind == "elu")
        _require_iff(self, "approximate", self.kind == "gelu")
        if self.negative_slope is not None and not (
            math.isfinite(self.negative_slope) and 0 <= self.negative_slope < 1
        ):
            raise SpecError("activation.negative_slope", self.negative_slope, "a number in [0, 1)")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise SpecError("activation.alpha", self.alpha, "a finite number > 0")
        if self.approximate is not None and self.approximate not in GELU_APPROXIMATIONS:
            raise SpecError("activation.approximate", self.approximate, GELU_APPROXIMATIONS)

    @classmethod
    def parse(cls, text: str | Activation) -> Activation:
        """Parse ``relu``, ``leaky_relu(0.2)``, ``elu(1.0)``, ``gelu(exact)`` or ``gelu(tanh)``."""
        if isinstance(text, Activation):
            return text
        match = _ACTIVATION_SYNTAX.match(text) if isinstance(text, str) else None
        if match is None:
            raise SpecError(
                "activation",
                text,
                "relu, tanh, sigmoid, linear, leaky_relu(slope), elu(alpha), gelu(exact) or gelu(tanh)",
            )
        kind, arg = match.group(1), match.group(2)
        if kind == "leaky_relu":
            return cls(kind, negative_slope=_parse_float("activation.negative_slope", arg, "leaky_relu(0.2)"))
        if kind == "elu":
            return cls(kind, alpha=_parse_float("activation.alpha", arg, "elu(1.0)"))
        if kind == "gelu":
            return cls(kind, approximate=arg)
        if arg is not None:
            raise SpecError("activation", text, f"{kind} without parameters")
        return cls(kind)

    def __str__(self) -> str:
        param = {"leaky_relu": self.negative_slope, "elu": self.alpha, "gelu": self.approximate}
        return f"{self.kind}({param[self.kind]})" if self.kind in param else self.kind


def _require_iff(activation: Activation, name: str, required: bool) -> None:
    value = getattr(activation, name)
    if required and value is None:
        raise SpecError(f"activation.{name}", None, f"an explicit value for {activation.kind}")
    if not required and value is not None:
        raise SpecError(f"activation.{name}", value, f"None for {activation.kind}")


def _parse_float(field_name: str, text: str | None, example: str) -> float:
    if text is None:
        raise SpecError(field_name, None, f"an explicit value, e.g. {example}")
    try:
        return float(text)
    except ValueError:
        raise SpecError(field_name, text, f"a number, e.g. {example}") from None


# --- vision layers --------------------------------------------------------------------------------

# Padding of a convolution or pooling window, resolved to explicit ((top, bottom), (left, right)):
#   "valid"   no padding.
#   "same"    the TensorFlow/XLA rule, which Keras and Flax follow: the output has ceil(in / stride)
#             positions; total = max((out − 1)·stride + window − in, 0) and the odd pixel goes on the
#             bottom/right. At stride 2 on an even input this is asymmetric, e.g. (0, 1) for a 3×3
#             window on 16 pixels — torch's padding='same' refuses strides > 1, and its integer
#             padding is always symmetric, so torch pads explicitly where it must.
#   ((t, b), (l, r))  explicit pixels, as torchvision's ResNet stem writes padding=3.
PADDING_MODES = ("valid", "same")
Pair = tuple[int, int]  # a window or stride (height, width)
Pads = tuple[tuple[int, int], tuple[int, int]]
Padding = str | Pads


def _pair(field_name: str, value: object) -> tuple[int, int]:
    """An int or a pair of ints as (height, width), each ≥ 1."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise SpecError(field_name, value, "a positive integer or a (height, width) pair of them")
    for i, v in enumerate(pair):
        check_positive_int(f"{field_name}[{i}]", v)
    return (int(pair[0]), int(pair[1]))


def _check_padding(field_name: str, padding: object) -> Padding:
    if isinstance(padding, str):
        if padding not in PADDING_MODES:
            raise SpecError(field_name, padding, "'valid', 'same' or ((top, bottom), (left, right))")
        return padding
    sides = list(padding) if isinstance(padding, (tuple, list)) and len(padding) == 2 else []
    pairs = [list(p) for p in sides if isinstance(p, (tuple, list)) and len(p) == 2]
    if len(pairs) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for p in pairs for v in p):
        raise SpecError(field_name, padding, "'valid', 'same' or ((top, bottom), (left, right)) of ints ≥ 0")
    return ((pairs[0][0], pairs[0][1]), (pairs[1][0], pairs[1][1]))


def resolve_padding(padding: Padding, size: tuple[int, int], window: tuple[int, int], strides: tuple[int, int]) -> Pads:
    """Explicit ((top, bottom), (left, right)) pixels for ``padding`` on an input of ``size`` (h, w)."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        pads = []
        for n, k, s in zip(size, window, strides):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return (pads[0], pads[1])
    if isinstance(padding, str):
        raise SpecError("padding", padding, PADDING_MODES)
    return padding


def output_size(
    size: tuple[int, int], window: tuple[int, int], strides: tuple[int, int], pads: Pads
) -> tuple[int, int]:
    """Spatial output size of a window sliding over ``size`` padded by ``pads`` (floor division)."""
    height, width = ((n + p[0] + p[1] - k) // s + 1 for n, k, s, p in zip(size, window, strides, pads))
    if min(height, width) < 1:
        raise SpecError("input size", size, f"at least the window {window} after padding {pads}")
    return height, width


@dataclass(frozen=True)
class Conv2D:
    """A 2-D convolution (cross-correlation, as every framework computes it). Canonical kernel layout
    (kh, kw, in, out); the activation is a separate :class:`Act` layer."""

    filters: int
    kernel_size: Pair  # an int n means (n, n), here and in strides
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    use_bias: bool = True

    if TYPE_CHECKING:  # the constructor also takes an int for a square window or stride

        def __init__(
            self, filters: int, kernel_size: Pair | int, strides: Pair | int = 1, padding: Padding = "valid",
            use_bias: bool = True,
        ) -> None: ...  # fmt: skip

    def __post_init__(self) -> None:
        check_positive_int("conv.filters", self.filters)
        object.__setattr__(self, "kernel_size", _pair("conv.kernel_size", self.kernel_size))
        object.__setattr__(self, "strides", _pair("conv.strides", self.strides))
        object.__setattr__(self, "padding", _check_padding("conv.padding", self.padding))
        if not isinstance(self.use_bias, bool):
            raise SpecError("conv.use_bias", self.use_bias, (True, False))


# Padding of a transposed convolution: how much of its full output it keeps. The full output of an
# input of n pixels is (n − 1)·stride + window (each input pixel paints a window-sized patch, stride
# apart); "valid" keeps all of it, and "same" keeps n·stride, cropping what the 'same' convolution of
# that size would pad — total = max(window − stride, 0), the odd pixel off the bottom/right (so that
# the layer is exactly the gradient of the 'same' Conv2D it mirrors, as in TensorFlow).
TRANSPOSED_PADDING_MODES = ("valid", "same")


@dataclass(frozen=True)
class ConvTranspose2D:
    """A transposed ("fractionally strided") 2-D convolution, the gradient of a Conv2D with respect
    to its input: input pixel (y, x) adds ``kernel[i, j]`` times its channels to output pixel
    (y·stride + i, x·stride + j) of the full output, which the padding then crops. Canonical kernel
    layout (kh, kw, in, out), ``in`` being this layer's input channels — no spatial flip. (torch
    stores (in, out, kh, kw); Keras, and Flax with ``transpose_kernel=True``, store (kh, kw, out, in),
    the kernel of the convolution it is the gradient of.) The activation is a separate :class:`Act`.
    """

    filters: int
    kernel_size: Pair  # an int n means (n, n), here and in strides
    strides: Pair = (1, 1)
    padding: str = "valid"
    use_bias: bool = True

    if TYPE_CHECKING:  # the constructor also takes an int for a square window or stride

        def __init__(
            self, filters: int, kernel_size: Pair | int, strides: Pair | int = 1, padding: str = "valid",
            use_bias: bool = True,
        ) -> None: ...  # fmt: skip

    def __post_init__(self) -> None:
        check_positive_int("conv_transpose.filters", self.filters)
        object.__setattr__(self, "kernel_size", _pair("conv_transpose.kernel_size", self.kernel_size))
        object.__setattr__(self, "strides", _pair("conv_transpose.strides", self.strides))
        if self.padding not in TRANSPOSED_PADDING_MODES:
            raise SpecError("conv_transpose.padding", self.padding, TRANSPOSED_PADDING_MODES)
        if any(k < s for k, s in zip(self.kernel_size, self.strides)):
            # a window narrower than its stride leaves gaps between patches, which the frameworks
            # fill differently (Keras pads the end, torch needs output_padding)
            raise SpecError("conv_transpose.kernel_size", self.kernel_size, f"at least the strides {self.strides}")
        if not isinstance(self.use_bias, bool):
            raise SpecError("conv_transpose.use_bias", self.use_bias, (True, False))

    def crops(self) -> Pads:
        """The ((top, bottom), (left, right)) pixels cropped off the full output."""
        if self.padding == "valid":
            return ((0, 0), (0, 0))
        totals = [max(k - s, 0) for k, s in zip(self.kernel_size, self.strides)]
        return ((totals[0] // 2, totals[0] - totals[0] // 2), (totals[1] // 2, totals[1] - totals[1] // 2))

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Spatial output size for an input of ``size`` (h, w)."""
        crops = self.crops()
        height, width = (
            (n - 1) * s + k - c[0] - c[1] for n, k, s, c in zip(size, self.kernel_size, self.strides, crops)
        )
        return height, width


POOL_KINDS = ("max", "avg")


@dataclass(frozen=True)
class Pool2D:
    """Max or average pooling. Padded pixels never win a max (they count as −∞). For an average over
    a padded window, ``count_padding`` says whether the padded zeros count in the divisor (torch's
    ``count_include_pad=True`` and Flax's default) or not (Keras's 'same'); it is required whenever
    the padding is not 'valid'. ``strides`` defaults to the window, as in every framework."""

    kind: str
    pool_size: Pair  # an int n means (n, n), here and in strides
    strides: Pair = None  # type: ignore[assignment]  # None until __post_init__: the window
    padding: Padding = "valid"
    count_padding: bool | None = None

    if TYPE_CHECKING:  # the constructor also takes an int for a square window or stride

        def __init__(
            self, kind: str, pool_size: Pair | int, strides: Pair | int | None = None, padding: Padding = "valid",
            count_padding: bool | None = None,
        ) -> None: ...  # fmt: skip

    def __post_init__(self) -> None:
        if self.kind not in POOL_KINDS:
            raise SpecError("pool.kind", self.kind, POOL_KINDS)
        object.__setattr__(self, "pool_size", _pair("pool.pool_size", self.pool_size))
        strides = self.pool_size if self.strides is None else self.strides
        object.__setattr__(self, "strides", _pair("pool.strides", strides))
        object.__setattr__(self, "padding", _check_padding("pool.padding", self.padding))
        needs_count = self.kind == "avg" and self.padding != "valid"
        if needs_count and not isinstance(self.count_padding, bool):
            raise SpecError("pool.count_padding", self.count_padding, "True or False for a padded average pool")
        if not needs_count and self.count_padding is not None:
            raise SpecError("pool.count_padding", self.count_padding, "None unless an average pool is padded")


RUNNING_VARIANCE = ("biased", "unbiased")


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation over every axis but the channels.

    ``momentum`` is the weight the running statistics keep at each update (the Keras and Flax
    convention): ``running = momentum · running + (1 − momentum) · batch``. torch's ``momentum`` is
    the other weight: spec 0.9 ≙ torch 0.1. ``epsilon`` is added to the variance (defaults: torch
    1e-5, Keras 1e-3, Flax 1e-5). Training normalises with the batch's biased variance in every
    framework; the running variance is updated with the ``biased`` one (Keras, Flax) or the
    ``unbiased`` one, n/(n−1) times larger (torch). Evaluation normalises with the running statistics.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    running_variance: str = "biased"

    def __post_init__(self) -> None:
        check_number("batchnorm.momentum", self.momentum, low=0.0, high=1.0)
        check_number("batchnorm.epsilon", self.epsilon, low=0.0, low_open=True)
        if self.running_variance not in RUNNING_VARIANCE:
            raise SpecError("batchnorm.running_variance", self.running_variance, RUNNING_VARIANCE)


@dataclass(frozen=True)
class Act:
    """An element-wise activation as a layer of its own."""

    activation: Activation

    if TYPE_CHECKING:  # the constructor also takes an activation's text, e.g. "leaky_relu(0.2)"

        def __init__(self, activation: Activation | str) -> None: ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "activation", Activation.parse(self.activation))


@dataclass(frozen=True)
class Flatten:
    """(batch, h, w, c) → (batch, h·w·c) in NHWC order: the Dense kernel after it has rows ordered
    (h, w, c). torch flattens NCHW as (c, h, w); its backend reorders those rows at its edge."""


@dataclass(frozen=True)
class Reshape:
    """(batch, h·w·c) → (batch, h, w, c), the inverse of :class:`Flatten` (NHWC order: the columns of
    the Dense kernel before it are ordered (h, w, c)). torch reshapes to NCHW, (c, h, w); its
    backend reorders those columns at its edge."""

    target_shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        shape = self.target_shape
        if not isinstance(shape, (tuple, list)) or len(shape) != 3:
            raise SpecError("reshape.target_shape", shape, "(height, width, channels)")
        for i, n in enumerate(shape):
            check_positive_int(f"reshape.target_shape[{i}]", n)
        object.__setattr__(self, "target_shape", tuple(shape))


@dataclass(frozen=True)
class GlobalAvgPool:
    """The mean over height and width: (batch, h, w, c) → (batch, c)."""


@dataclass(frozen=True)
class Dense:
    """A fully connected layer, kernel (in, out); the activation is a separate :class:`Act` layer."""

    units: int
    use_bias: bool = True

    def __post_init__(self) -> None:
        check_positive_int("dense.units", self.units)
        if not isinstance(self.use_bias, bool):
            raise SpecError("dense.use_bias", self.use_bias, (True, False))


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout: in training, zero each element with probability ``rate`` and scale the rest
    by 1 / (1 − rate); the identity in evaluation."""

    rate: float

    def __post_init__(self) -> None:
        check_number("dropout.rate", self.rate, low=0.0, high=1.0)


Layer = Conv2D | ConvTranspose2D | Pool2D | BatchNorm | Act | Flatten | Reshape | GlobalAvgPool | Dense | Dropout
LAYER_TYPES = (Conv2D, ConvTranspose2D, Pool2D, BatchNorm, Act, Flatten, Reshape, GlobalAvgPool, Dense, Dropout)


def layer_output_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape (without the batch axis) ``layer`` makes of an input of ``shape``."""
    image = len(shape) == 3
    size = (shape[0], shape[1]) if image else (0, 0)  # an image's (height, width)
    match layer:
        case Conv2D() | ConvTranspose2D() | Pool2D() if not image:
            raise SpecError("layers", type(layer).__name__, "image layers only on images, not after Flatten")
        case Conv2D():
            window, strides = layer.kernel_size, layer.strides
            pads = resolve_padding(layer.padding, size, window, strides)
            return (*output_size(size, window, strides, pads), layer.filters)
        case ConvTranspose2D():
            return (*layer.output_size(size), layer.filters)
        case Pool2D():
            window, strides = layer.pool_size, layer.strides
            pads = resolve_padding(layer.padding, size, window, strides)
            if layer.kind == "max" and any(p >= k for pair, k in zip(pads, window) for p in pair):
                raise SpecError("pool.padding", pads, f"fewer pixels per side than the window {window}")
            return (*output_size(size, window, strides, pads), shape[2])
        case Flatten() | GlobalAvgPool() if not image:
            raise SpecError("layers", type(layer).__name__, "Flatten or GlobalAvgPool only on images")
        case Flatten():
            return (shape[0] * shape[1] * shape[2],)
        case GlobalAvgPool():
            return (shape[2],)
        case Reshape() if image:
            raise SpecError("layers", "Reshape", "Reshape only on vectors (after Dense layers)")
        case Reshape():
            target = layer.target_shape
            if target[0] * target[1] * target[2] != shape[0]:
                raise SpecError("reshape.target_shape", target, f"{shape[0]} values, the size of its input")
            return target
        case Dense() if image:
            raise SpecError("layers", "Dense", "Dense layers only on vectors (after Flatten or GlobalAvgPool)")
        case Dense():
            return (layer.units,)
    return shape  # BatchNorm, Act, Dropout keep the shape


def layer_flops(layer: Layer, shape: tuple[int, ...]) -> int:
    """Operations of one layer on one example whose input has ``shape``: multiply-adds count two."""
    if isinstance(layer, Conv2D):
        out_h, out_w, filters = layer_output_shape(layer, shape)
        kh, kw = layer.kernel_size
        return 2 * out_h * out_w * kh * kw * shape[2] * filters
    if isinstance(layer, ConvTranspose2D):  # every input pixel paints a kh×kw patch (the cropped part too)
        kh, kw = layer.kernel_size
        return 2 * shape[0] * shape[1] * kh * kw * shape[2] * layer.filters
    if isinstance(layer, Dense):
        return 2 * shape[0] * layer.units
    return 0
