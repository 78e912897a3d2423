"""The Transformer encoder on token ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from spec.data import Split
from spec.data.sequences import TOKEN_TASKS, duplicate_tokens, majority_tokens, token_split
from spec.errors import SpecError
from spec.layers import EMBEDDING_INITIALIZERS, Activation
from spec.models.base import ModelSpec
from spec.validation import check_number, check_positive_int

# Transformer encoder choices:
#   positional   "sinusoidal" — the fixed table of Vaswani et al. (2017), sin at even and cos at odd
#                features, interleaved: PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(…);
#                "learned" — a trained (seq_len, d_model) table
#   norm         "post" — x = LN(x + sublayer(x)) (the original; torch's default norm_first=False);
#                "pre"  — x = x + sublayer(LN(x)), with one more LayerNorm after the last layer
#   pooling      what the head reads: "mean" of the non-padding positions, the "first" position (a
#                [CLS]-style token), or "none" — every position (one Dense per position)
POSITIONAL_ENCODINGS = ("sinusoidal", "learned")
NORM_PLACEMENTS = ("post", "pre")
POOLINGS = ("mean", "first", "none")
FFN_ACTIVATIONS = ("relu", "gelu")


@dataclass(frozen=True)
class TransformerSpec(ModelSpec):
    """A Transformer encoder on token ids ``(batch, seq_len)``: token embedding (times √d_model when
    ``scale_embedding``), positions, ``num_layers`` encoder layers — multi-head self-attention and a
    position-wise FFN (Dense ``ff_size`` → activation → Dense ``d_model``), each with a residual and
    a LayerNorm — then pooling and a Dense head. No dropout.

    Attention: per head, softmax(q·kᵀ / √head_dim) · v, where head_dim is ``key_dim`` (Keras's
    ``MultiHeadAttention(num_heads, key_dim)``; the size of each head's queries, keys and values), or
    d_model / num_heads when it is ``None`` (torch's and the original's); the heads' outputs
    concatenate (head-major) into the output projection back to d_model. The padding mask hides the
    keys whose token is ``pad_token`` (``None``: no mask): every position, padding included, attends
    to the non-padding positions only. A sequence must hold at least one non-padding token.
    LayerNorm normalises each position over its features with the biased variance and
    ``layer_norm_epsilon`` inside the square root (defaults: torch 1e-5, Keras 1e-3, Flax 1e-6).
    """

    vocab_size: int
    seq_len: int
    d_model: int
    num_heads: int
    ff_size: int
    num_layers: int
    output_size: int
    output_activation: str
    activation: Activation = "relu"  # type: ignore[assignment]  # parsed by __post_init__
    positional: str = "sinusoidal"
    norm: str = "post"
    layer_norm_epsilon: float = 1e-5
    pad_token: int | None = 0
    pooling: str = "mean"
    scale_embedding: bool = True
    embedding_initializer: str = "normal"
    key_dim: int | None = None

    kind: ClassVar[str] = "transformer"
    input_dtype: ClassVar[str] = "int32"

    if TYPE_CHECKING:  # the constructor also takes the activation as text, e.g. "gelu(tanh)"

        def __init__(
            self, name: str, vocab_size: int, seq_len: int, d_model: int, num_heads: int, ff_size: int,
            num_layers: int, output_size: int, output_activation: str, activation: Activation | str = "relu",
            positional: str = "sinusoidal", norm: str = "post", layer_norm_epsilon: float = 1e-5,
            pad_token: int | None = 0, pooling: str = "mean", scale_embedding: bool = True,
            embedding_initializer: str = "normal", key_dim: int | None = None, *, kernel_initializer: str = ...,
            bias_initializer: str = ..., kernel_l2: float = ..., frozen: tuple[str, ...] = ...,
            frozen_batchnorm: str = ...,
        ) -> None: ...  # fmt: skip

    def __post_init__(self) -> None:
        for field_name in ("vocab_size", "seq_len", "d_model", "num_heads", "ff_size", "num_layers", "output_size"):
            check_positive_int(field_name, getattr(self, field_name))
        if self.key_dim is not None:
            check_positive_int("key_dim", self.key_dim)
        elif self.d_model % self.num_heads:
            raise SpecError("num_heads", self.num_heads, f"a divisor of d_model ({self.d_model}), or a key_dim")
        activation = Activation.parse(self.activation)
        object.__setattr__(self, "activation", activation)
        if activation.kind not in FFN_ACTIVATIONS:
            raise SpecError("activation", activation, FFN_ACTIVATIONS)
        if self.positional not in POSITIONAL_ENCODINGS:
            raise SpecError("positional", self.positional, POSITIONAL_ENCODINGS)
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise SpecError("d_model", self.d_model, "an even number for sinusoidal positions")
        if self.norm not in NORM_PLACEMENTS:
            raise SpecError("norm", self.norm, NORM_PLACEMENTS)
        check_number("layer_norm_epsilon", self.layer_norm_epsilon, low=0.0, low_open=True)
        if self.pad_token is not None and (
            isinstance(self.pad_token, bool) or not isinstance(self.pad_token, int) or
            not 0 <= self.pad_token < self.vocab_size
        ):  # fmt: skip
            raise SpecError("pad_token", self.pad_token, f"None or a token id in [0, {self.vocab_size})")
        if self.pooling not in POOLINGS:
            raise SpecError("pooling", self.pooling, POOLINGS)
        if self.pooling == "none" and self.output_activation == "softmax":
            raise SpecError("output_activation", "softmax", "sigmoid or linear with a per-position head")
        if not isinstance(self.scale_embedding, bool):
            raise SpecError("scale_embedding", self.scale_embedding, (True, False))
        if self.embedding_initializer not in EMBEDDING_INITIALIZERS:
            raise SpecError("embedding_initializer", self.embedding_initializer, EMBEDDING_INITIALIZERS)
        if self.kernel_l2:  # which tensors an L2 term covers (embeddings? attention?) is not pinned yet
            raise SpecError("kernel_l2", self.kernel_l2, "0 for Transformer models")
        if self.frozen:
            raise SpecError("frozen", self.frozen, "() for Transformer models")
        super().__post_init__()

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads if self.key_dim is None else self.key_dim

    @property
    def attention_width(self) -> int:
        """The width of the queries, keys and values of all heads together."""
        return self.num_heads * self.head_dim

    @property
    def input_shape(self) -> tuple[int]:
        return (self.seq_len,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.seq_len, self.output_size) if self.pooling == "none" else (self.output_size,)

    @property
    def reconstructs_input(self) -> bool:
        return False

    @property
    def recipe_tasks(self) -> tuple[str, ...]:
        """The synthetic token tasks (:mod:`spec.data.sequences`)."""
        return TOKEN_TASKS

    def task_split(self, task: str, seed: int) -> Split:
        return token_split(task, self.seq_len, self.vocab_size, self.pad_token, seed=seed)

    def describe(self) -> str:
        positions = "sinusoidal" if self.positional == "sinusoidal" else "learned"
        return (
            f"{self.seq_len} tokens of {self.vocab_size}, {positions} positions, {self.num_layers}× "
            f"{self.norm}-norm encoder (d {self.d_model}, {self.num_heads} heads"
            f"{'' if self.key_dim is None else f' of {self.key_dim}'}, FFN {self.ff_size} "
            f"{self.activation}, LN ε {self.layer_norm_epsilon:g}) → {self.pooling} → "
            f"dense{self.output_size} ({self.output_activation})"
        )

    def forward_flops(self, batch: int) -> int:
        """Per layer and position: q, k, v, output projections, scores and mixing, FFN; then the head."""
        check_positive_int("batch", batch)
        t, d, inner = self.seq_len, self.d_model, self.attention_width
        per_layer = t * (2 * 4 * d * inner + 2 * 2 * t * inner + 2 * 2 * d * self.ff_size)
        head_positions = t if self.pooling == "none" else 1
        return batch * (self.num_layers * per_layer + head_positions * 2 * d * self.output_size)

    def example_batch(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Padded token sequences and targets shaped for the head: per-position duplicate labels for a
        per-position head; otherwise majority classes — class ids modulo the output size for softmax,
        indicator columns (is the class j?) for sigmoid or linear outputs."""
        if self.pooling == "none":
            task = duplicate_tokens(size, self.seq_len, self.vocab_size, self.pad_token, seed)
            return task.x, np.repeat(task.y, self.output_size, axis=-1)
        task = majority_tokens(size, self.seq_len, self.vocab_size, self.pad_token, seed)
        if self.output_activation == "softmax":
            return task.x, task.y % self.output_size
        return task.x, (task.y[:, None] == np.arange(self.output_size)).astype(np.float32)
