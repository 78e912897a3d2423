"""Recurrent networks on batch-first sequences: SimpleRNN, LSTM and GRU stacks with a Dense head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from spec.data import Split
from spec.data.sequences import SEQUENCE_TASKS, running_sign_for, sequence_split
from spec.errors import SpecError
from spec.layers import RECURRENT_INITIALIZERS
from spec.models.base import ModelSpec
from spec.validation import check_positive_int

# Recurrent cells and their gates, in the canonical order in which kernels and biases concatenate
# them (torch's and Flax's order; Keras orders the GRU's z, r, h and its backend reorders):
#   simple_rnn  h' = tanh(x·W + b + h·U)
#   lstm        i, f, g, o = split(x·W + b + h·U);  c' = σ(f)·c + σ(i)·tanh(g);  h' = σ(o)·tanh(c')
#   gru         r, z = σ(x·W_rz + b_rz + h·U_rz [+ b'_rz]);  h' = (1 − z)·n + z·h, where
#                 reset "after":  n = tanh(x·W_n + b_n + r·(h·U_n + b'_n))   (torch; Keras reset_after=True)
#                 reset "before": n = tanh(x·W_n + b_n + (r·h)·U_n)          (Keras reset_after=False)
# b' is the recurrent bias, which only the reset-"after" GRU has (see spec.params).
RNN_CELLS = ("simple_rnn", "lstm", "gru")
GATES = {"simple_rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
GRU_RESET = ("after", "before")
# What the head reads: "last" — the final hidden state of each direction of the top layer (the
# forward one after step T−1, the backward one after step 0), concatenated; "sequence" — every time
# step's output (one Dense applied per step); "attention" — every step's output pooled by attention
# weights, α = softmax over the steps of a score e_t per step, context = Σ_t α_t·h_t (Bahdanau et
# al. 2015, as a time series' attention pooling):
#   "dot"       e_t = h_t · w                         (w: ``attention_score``, no bias)
#   "additive"  e_t = v · tanh(h_t·W + b)             (W, b: ``attention``; v: ``attention_score``)
# (a bias on the score would add the same to every step's, which the softmax cancels).
SEQUENCE_HEADS = ("last", "sequence", "attention")
ATTENTION_SCORES = ("dot", "additive")


@dataclass(frozen=True)
class RNNSpec(ModelSpec):
    """Stacked recurrent layers (batch-first sequences ``(batch, seq_len, input_size)``) and a Dense head.

    Each layer after the first reads the previous one's outputs (both directions concatenated when
    ``bidirectional``). No dropout between layers. ``cell`` and ``gru_reset`` are defined at
    :data:`RNN_CELLS`; ``head`` at :data:`SEQUENCE_HEADS`.
    """

    cell: str
    input_size: int
    hidden_size: int
    seq_len: int
    output_size: int
    output_activation: str
    num_layers: int = 1
    bidirectional: bool = False
    head: str = "last"
    gru_reset: str = "after"
    recurrent_initializer: str = "orthogonal"
    attention: str = "additive"  # the score of an "attention" head (ATTENTION_SCORES)
    attention_units: int = 32  # the width of an additive score's tanh layer

    kind: ClassVar[str] = "rnn"

    def __post_init__(self) -> None:
        if self.cell not in RNN_CELLS:
            raise SpecError("cell", self.cell, RNN_CELLS)
        for field_name in ("input_size", "hidden_size", "seq_len", "output_size", "num_layers"):
            check_positive_int(field_name, getattr(self, field_name))
        if not isinstance(self.bidirectional, bool):
            raise SpecError("bidirectional", self.bidirectional, (True, False))
        if self.head not in SEQUENCE_HEADS:
            raise SpecError("head", self.head, SEQUENCE_HEADS)
        if self.head == "sequence" and self.output_activation == "softmax":
            raise SpecError("output_activation", "softmax", "sigmoid or linear with a per-step head")
        if self.attention not in ATTENTION_SCORES:
            raise SpecError("attention", self.attention, ATTENTION_SCORES)
        check_positive_int("attention_units", self.attention_units)
        if self.gru_reset not in GRU_RESET:
            raise SpecError("gru_reset", self.gru_reset, GRU_RESET)
        if self.recurrent_initializer not in RECURRENT_INITIALIZERS:
            raise SpecError("recurrent_initializer", self.recurrent_initializer, RECURRENT_INITIALIZERS)
        if self.kernel_l2:  # a recurrent kernel's penalty differs per framework; not pinned yet
            raise SpecError("kernel_l2", self.kernel_l2, "0 for recurrent models")
        if self.frozen:
            raise SpecError("frozen", self.frozen, "() for recurrent models")
        super().__post_init__()

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[self.cell]

    @property
    def directions(self) -> tuple[str, ...]:
        return ("forward", "backward") if self.bidirectional else ("forward",)

    @property
    def has_recurrent_bias(self) -> bool:
        """Whether each layer has a second bias inside the recurrent term (the reset-"after" GRU)."""
        return self.cell == "gru" and self.gru_reset == "after"

    @property
    def features(self) -> int:
        """Width of each layer's output: the hidden size times the number of directions."""
        return self.hidden_size * len(self.directions)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.seq_len, self.input_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.seq_len, self.output_size) if self.head == "sequence" else (self.output_size,)

    @property
    def reconstructs_input(self) -> bool:
        return False

    @property
    def recipe_tasks(self) -> tuple[str, ...]:
        """The synthetic sequence tasks (:mod:`spec.data.sequences`)."""
        return SEQUENCE_TASKS

    def task_split(self, task: str, seed: int) -> Split:
        return sequence_split(task, self.seq_len, self.input_size, seed=seed)

    def describe(self) -> str:
        cell = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": f"GRU (reset {self.gru_reset})"}[self.cell]
        stack = f"{self.num_layers}×" if self.num_layers > 1 else ""
        bi = "bidirectional " if self.bidirectional else ""
        head = self.head
        if head == "attention":
            head = f"{self.attention} attention" + (
                f" ({self.attention_units})" if self.attention == "additive" else ""
            )
        return (
            f"{self.seq_len}×{self.input_size} {bi}{stack}{cell}({self.hidden_size}) → {head} → "
            f"dense{self.output_size} ({self.output_activation})"
        )

    def forward_flops(self, batch: int) -> int:
        """Per step, layer and direction: the input and the recurrent matmul; then the head."""
        check_positive_int("batch", batch)
        gates = len(self.gates) * self.hidden_size
        inputs = [self.input_size] + [self.features] * (self.num_layers - 1)
        per_step = sum(2 * (n + self.hidden_size) * gates * len(self.directions) for n in inputs)
        head_steps = self.seq_len if self.head == "sequence" else 1
        pooling = 0
        if self.head == "attention":  # each step's score, then the weighted sum
            score = self.attention_units * (self.features + 1) if self.attention == "additive" else self.features
            pooling = self.seq_len * 2 * (score + self.features)
        return batch * (self.seq_len * per_step + pooling + head_steps * 2 * self.features * self.output_size)

    def example_batch(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Sequences of the running-sign task, with targets of the head's shape: class ids modulo the
        output size for a softmax head, else the task's target repeated for each output."""
        task = running_sign_for(self.head, size, self.seq_len, self.input_size, seed)
        if self.output_activation == "softmax":
            return task.x, task.y[:, 0].astype(np.int64) % self.output_size
        return task.x, np.repeat(task.y, self.output_size, axis=-1)  # the task's one target per output
