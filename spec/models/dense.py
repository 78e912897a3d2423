"""Dense networks: the multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, ClassVar

from spec.data import DIGITS
from spec.errors import SpecError
from spec.layers import Activation
from spec.models.base import ModelSpec, check_sequence
from spec.validation import check_number, check_positive_int


@dataclass(frozen=True)
class MLPSpec(ModelSpec):
    """A multi-layer perceptron: Dense layers with one activation each, then an output Dense layer.

    The model computes logits (the output layer before ``output_activation``); ``output_activation``
    turns them into the model's outputs. Losses are computed from the logits, as every framework's
    numerically stable loss does.
    """

    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int
    activations: tuple[Activation, ...]  # one per hidden layer
    output_activation: str
    use_bias: bool = True
    dropout: float = 0.0

    kind: ClassVar[str] = "mlp"

    if TYPE_CHECKING:  # the constructor also takes activations as text, or one shared by every hidden layer

        def __init__(
            self, name: str, input_size: int, hidden_sizes: tuple[int, ...], output_size: int,
            activations: Sequence[Activation | str] | Activation | str, output_activation: str,
            use_bias: bool = True, dropout: float = 0.0, *, kernel_initializer: str = ..., bias_initializer: str = ...,
            kernel_l2: float = ..., frozen: tuple[str, ...] = ..., frozen_batchnorm: str = ...,
        ) -> None: ...  # fmt: skip

    def __post_init__(self) -> None:
        check_positive_int("input_size", self.input_size)
        check_positive_int("output_size", self.output_size)
        hidden = check_sequence("hidden_sizes", self.hidden_sizes, "a sequence of positive integers")
        object.__setattr__(self, "hidden_sizes", hidden)
        for i, size in enumerate(hidden):
            check_positive_int(f"hidden_sizes[{i}]", size)
        activations: Sequence[Activation | str] | Activation | str = self.activations  # as passed, not yet parsed
        if isinstance(activations, (str, Activation)):  # one activation shared by every hidden layer
            activations = (activations,) * len(hidden)
        activations = tuple(Activation.parse(a) for a in activations)
        if len(activations) != len(hidden):
            raise SpecError("activations", activations, f"one per hidden layer ({len(hidden)})")
        object.__setattr__(self, "activations", activations)
        if not isinstance(self.use_bias, bool):
            raise SpecError("use_bias", self.use_bias, (True, False))
        check_number("dropout", self.dropout, low=0.0, high=1.0)
        super().__post_init__()

    @property
    def has_dropout(self) -> bool:
        return self.dropout > 0

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. (784, 512, 10)."""
        return (self.input_size, *self.hidden_sizes, self.output_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example (without the batch axis)."""
        return (self.input_size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.output_size,)

    @property
    def recipe_tasks(self) -> tuple[str, ...]:
        """As for every model; a dense one whose output is as wide as its input may also classify."""
        tasks = super().recipe_tasks
        return (DIGITS, *tasks) if self.reconstructs_input else tasks

    def describe(self) -> str:
        """One line a person can read, e.g. ``784-512(relu)-10(softmax)``."""
        hidden = "-".join(f"{n}({a})" for n, a in zip(self.hidden_sizes, self.activations))
        extras = "".join(
            f", {label} {value:g}" for label, value in (("dropout", self.dropout), ("L2", self.kernel_l2)) if value
        )
        return "-".join(p for p in (str(self.input_size), hidden) if p) + (
            f"-{self.output_size}({self.output_activation}){extras}"
        )

    def forward_flops(self, batch: int) -> int:
        check_positive_int("batch", batch)
        return 2 * batch * sum(fan_in * fan_out for fan_in, fan_out in pairwise(self.layer_sizes))
