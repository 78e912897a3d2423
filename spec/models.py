"""Framework-neutral model specs and the zoo of named classic models.

A spec holds every choice that the frameworks default differently, so that no backend ever relies on
a framework default. Specs are frozen dataclasses validated on construction: a bad field raises
:class:`SpecError` naming the field and the allowed values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class MLPSpec:
    """A multi-layer perceptron: Dense layers with one activation each, then an output Dense layer.

    The model computes logits (the output layer before ``output_activation``); ``output_activation``
    turns them into the model's outputs. Losses are computed from the logits, as every framework's
    numerically stable loss does.
    """

    name: str
    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int
    activations: tuple[Activation, ...]
    output_activation: str
    use_bias: bool = True
    kernel_initializer: str = "glorot_uniform"
    bias_initializer: str = "zeros"
    dropout: float = 0.0
    kernel_l2: float = 0.0
    kind: str = field(default="mlp", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise SpecError("name", self.name, "a Python identifier such as 'mnist_mlp'")
        check_positive_int("input_size", self.input_size)
        check_positive_int("output_size", self.output_size)
        if isinstance(self.hidden_sizes, (str, bytes)) or not hasattr(self.hidden_sizes, "__iter__"):
            raise SpecError("hidden_sizes", self.hidden_sizes, "a sequence of positive integers")
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for i, size in enumerate(self.hidden_sizes):
            check_positive_int(f"hidden_sizes[{i}]", size)
        activations = self.activations
        if isinstance(activations, (str, Activation)):  # one activation shared by every hidden layer
            activations = (activations,) * len(self.hidden_sizes)
        activations = tuple(Activation.parse(a) for a in activations)
        if len(activations) != len(self.hidden_sizes):
            raise SpecError("activations", activations, f"one per hidden layer ({len(self.hidden_sizes)})")
        object.__setattr__(self, "activations", activations)
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise SpecError("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        if not isinstance(self.use_bias, bool):
            raise SpecError("use_bias", self.use_bias, (True, False))
        if self.kernel_initializer not in KERNEL_INITIALIZERS:
            raise SpecError("kernel_initializer", self.kernel_initializer, KERNEL_INITIALIZERS)
        if self.bias_initializer not in BIAS_INITIALIZERS:
            raise SpecError("bias_initializer", self.bias_initializer, BIAS_INITIALIZERS)
        check_number("dropout", self.dropout, low=0.0, high=1.0)
        check_number("kernel_l2", self.kernel_l2, low=0.0)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. (784, 512, 10)."""
        return (self.input_size, *self.hidden_sizes, self.output_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example (without the batch axis)."""
        return (self.input_size,)

    def describe(self) -> str:
        """One line a person can read, e.g. ``784-512(relu)-10(softmax)``."""
        hidden = "-".join(f"{n}({a})" for n, a in zip(self.hidden_sizes, self.activations))
        extras = "".join(
            f", {label} {value:g}" for label, value in (("dropout", self.dropout), ("L2", self.kernel_l2)) if value
        )
        return "-".join(p for p in (str(self.input_size), hidden) if p) + (
            f"-{self.output_size}({self.output_activation}){extras}"
        )


ModelSpec = MLPSpec  # grows into a union as the zoo adds architectures


ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # The classic MNIST net (Chollet, "Deep Learning with Python", ch. 2): Dense 512 relu → Dense 10
        # softmax on flattened 28×28 images; 407,050 parameters.
        MLPSpec(
            name="mnist_mlp",
            input_size=784,
            hidden_sizes=(512,),
            output_size=10,
            activations=("relu",),
            output_activation="softmax",
        ),
        # A deeper net for the embedded 8×8 digits: 64 → 64 → 32 → 10.
        MLPSpec(
            name="digits_mlp",
            input_size=64,
            hidden_sizes=(64, 32),
            output_size=10,
            activations=("relu", "relu"),
            output_activation="softmax",
        ),
        # The same depth with the activations whose defaults differ most between frameworks.
        MLPSpec(
            name="digits_mlp_smooth",
            input_size=64,
            hidden_sizes=(64, 32),
            output_size=10,
            activations=("gelu(exact)", "elu(1.0)"),
            output_activation="softmax",
            kernel_initializer="he_normal",
        ),
    )
}


def get_model(name: str) -> ModelSpec:
    """The zoo model called ``name``."""
    try:
        return ZOO[name]
    except KeyError:
        raise SpecError("model", name, sorted(ZOO)) from None
