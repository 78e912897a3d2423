"""Synthetic sequence tasks, generated in numpy from a seed so that every backend sees the same data.

Sequences are batch-first float32 arrays ``(n, seq_len, features)``; token tasks (for the
Transformer encoder) give int32 token ids ``(n, seq_len)``, right-padded with the pad token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spec.data import Split
from spec.errors import SpecError
from spec.validation import check_positive_int


@dataclass(frozen=True)
class SequenceTask:
    """Inputs ``x`` (n, seq_len, features) and targets ``y``; ``baseline`` is the loss of the best
    constant prediction, the bar a model has to clear to show it learned anything."""

    x: np.ndarray
    y: np.ndarray
    baseline: float


def adding_problem(n: int, seq_len: int, seed: int) -> SequenceTask:
    """Hochreiter & Schmidhuber's adding problem (1997): feature 0 is uniform in [0, 1], feature 1
    marks one step in each half of the sequence; the target is the sum of the two marked values.
    Always predicting 1 has MSE 1/6 (the variance of a sum of two uniforms)."""
    check_positive_int("n", n)
    if not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an integer >= 2, got {seq_len!r}")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, (n, seq_len))
    half = seq_len // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, seq_len, n)
    markers = np.zeros((n, seq_len))
    markers[np.arange(n), first] = markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[np.arange(n), first] + values[np.arange(n), second])[:, None].astype(np.float32)
    return SequenceTask(x, y, baseline=1.0 / 6.0)


def sine_forecast(n: int, seq_len: int, seed: int, noise: float = 0.05) -> SequenceTask:
    """Windows of sine waves with random frequency, phase and amplitude plus Gaussian noise; the
    target is the next (noise-free) value. The baseline is the target's variance."""
    check_positive_int("n", n)
    check_positive_int("seq_len", seq_len)
    rng = np.random.default_rng(seed)
    frequency = rng.uniform(0.1, 0.3, (n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1))
    amplitude = rng.uniform(0.5, 1.0, (n, 1))
    t = np.arange(seq_len + 1)[None, :]
    clean = amplitude * np.sin(frequency * t + phase)
    x = (clean[:, :seq_len] + noise * rng.standard_normal((n, seq_len)))[..., None].astype(np.float32)
    y = clean[:, seq_len:].astype(np.float32)
    return SequenceTask(x, y, baseline=float(y.var()))


def drift_sign(n: int, seq_len: int, seed: int, drift: float = 0.3) -> SequenceTask:
    """Gaussian noise around a drift of +``drift`` (label 1) or −``drift`` (label 0), labels
    balanced: the evidence is spread over every step, and the last ~20 steps already give ~90%
    (Bayes accuracy over 100 steps: 99.9%). Baseline: binary cross-entropy ln 2."""
    check_positive_int("n", n)
    check_positive_int("seq_len", seq_len)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    x = np.where(labels == 1, drift, -drift)[:, None] + rng.standard_normal((n, seq_len))
    return SequenceTask(x[..., None].astype(np.float32), labels[:, None].astype(np.float32), float(np.log(2.0)))


def running_sign(n: int, seq_len: int, seed: int, features: int = 1) -> SequenceTask:
    """Gaussian sequences labelled 1 where the running sum of feature 0 is positive: per step
    ``y`` (n, seq_len, 1), for the per-step (sequence) heads. The final step's label is the
    sequence's class for last-state heads (``y[:, -1]``). Baseline: binary cross-entropy ln 2."""
    check_positive_int("n", n)
    check_positive_int("seq_len", seq_len)
    check_positive_int("features", features)
    x = np.random.default_rng(seed).standard_normal((n, seq_len, features)).astype(np.float32)
    y = (np.cumsum(x[..., :1], axis=1) > 0).astype(np.float32)
    return SequenceTask(x, y, baseline=float(np.log(2.0)))


# The tasks a recipe can name (spec.recipes.RecipeSpec.data), each with the shape of its targets:
# "running_sign" labels every step, "running_sign_last" only the last one.
SEQUENCE_TASKS = ("adding_problem", "sine_forecast", "drift_sign", "running_sign", "running_sign_last")


def sequence_task(task: str, n: int, seq_len: int, features: int, seed: int) -> SequenceTask:
    """``n`` sequences of task ``task`` with ``features`` inputs per step (the adding problem has 2,
    the sine tasks 1)."""
    fixed = {
        "adding_problem": (2, adding_problem),
        "sine_forecast": (1, sine_forecast),
        "drift_sign": (1, drift_sign),
    }
    match task:
        case "adding_problem" | "sine_forecast" | "drift_sign":
            needed, make = fixed[task]
            if features != needed:
                raise SpecError("input_size", features, f"{needed} for the {task} task")
            return make(n, seq_len, seed)
        case "running_sign":
            return running_sign(n, seq_len, seed, features)
        case "running_sign_last":
            full = running_sign(n, seq_len, seed, features)
            return SequenceTask(full.x, full.y[:, -1], full.baseline)
    raise SpecError("data", task, SEQUENCE_TASKS)


def running_sign_for(head: str, n: int, seq_len: int, features: int, seed: int) -> SequenceTask:
    """The running-sign task with targets shaped for a recurrent head (:data:`spec.models.SEQUENCE_HEADS`):
    every step's label for a per-step ("sequence") head, the last one's otherwise."""
    return sequence_task("running_sign" if head == "sequence" else "running_sign_last", n, seq_len, features, seed)


def padded_tokens(n: int, seq_len: int, vocab: int, pad: int | None, seed: int) -> np.ndarray:
    """``n`` sequences of tokens drawn uniformly from the ids other than ``pad``, each of a length
    uniform in [seq_len/3, seq_len] (at least 1) and right-padded with ``pad``; full length when
    ``pad`` is None."""
    check_positive_int("n", n)
    check_positive_int("seq_len", seq_len)
    if not isinstance(vocab, int) or vocab < 2:
        raise SpecError("vocab_size", vocab, "an integer >= 2 (padding and at least one token)")
    rng = np.random.default_rng(seed)
    symbols = np.array([t for t in range(vocab) if t != pad])
    tokens = symbols[rng.integers(0, len(symbols), (n, seq_len))]
    if pad is not None:
        lengths = rng.integers(max(1, seq_len // 3), seq_len + 1, n)
        tokens[np.arange(seq_len)[None, :] >= lengths[:, None]] = pad
    return tokens.astype(np.int32)


def majority_tokens(n: int, seq_len: int, vocab: int, pad: int | None, seed: int) -> SequenceTask:
    """Padded token sequences labelled with their most frequent token (its index among the non-pad
    ids, so ``vocab − 1`` classes with padding); sequences whose top count is tied are redrawn.
    Baseline: cross-entropy of the class frequencies."""
    tokens = padded_tokens(n, seq_len, vocab, pad, seed)
    symbols = np.array([t for t in range(vocab) if t != pad])
    redraw = 1
    while True:
        counts = (tokens[..., None] == symbols).sum(axis=1)
        top = np.sort(counts, axis=1)
        tied = np.flatnonzero(top[:, -1] == top[:, -2]) if len(symbols) > 1 else np.array([], int)
        if not tied.size:
            break
        tokens[tied] = padded_tokens(len(tied), seq_len, vocab, pad, seed + 7919 * redraw)
        redraw += 1
    labels = counts.argmax(axis=1).astype(np.int64)
    frequencies = np.bincount(labels, minlength=len(symbols)) / n
    present = frequencies[frequencies > 0]
    return SequenceTask(tokens, labels, float(-(present * np.log(present)).sum()))


def duplicate_tokens(n: int, seq_len: int, vocab: int, pad: int | None, seed: int) -> SequenceTask:
    """Padded token sequences labelled per position: 1 where the token occurs at another non-pad
    position of its sequence, 0 elsewhere (padding included). Answering needs attention across
    positions. Baseline: binary cross-entropy of the mean label."""
    tokens = padded_tokens(n, seq_len, vocab, pad, seed)
    real = np.ones(tokens.shape, bool) if pad is None else tokens != pad
    same = (tokens[:, :, None] == tokens[:, None, :]) & real[:, :, None] & real[:, None, :]
    y = ((same.sum(axis=2) > 1) & real).astype(np.float32)[..., None]
    p = float(y.mean())
    baseline = -(p * np.log(p) + (1 - p) * np.log1p(-p)) if 0 < p < 1 else 0.0
    return SequenceTask(tokens, y, float(baseline))


# The token tasks a recipe can name for a Transformer: "majority" (one class per sequence) and
# "duplicates" (a label per position).
TOKEN_TASKS = ("majority", "duplicates")


def token_task(task: str, n: int, seq_len: int, vocab: int, pad: int | None, seed: int) -> SequenceTask:
    """``n`` sequences of token task ``task``."""
    makers = {"majority": majority_tokens, "duplicates": duplicate_tokens}
    if task not in makers:
        raise SpecError("data", task, TOKEN_TASKS)
    return makers[task](n, seq_len, vocab, pad, seed)


SEQUENCE_TRAIN, SEQUENCE_TEST = 2048, 512  # sequences in a split's two halves


def split_of(make: Callable[[int, int], SequenceTask], *, train: int, test: int, seed: int) -> Split:
    """A train/test split from ``make(n, seed)``: the two halves drawn from different seeds."""
    first, second = make(train, seed), make(test, seed + 1_000_003)
    return Split(first.x, first.y, second.x, second.y)


def sequence_split(
    task: str, seq_len: int, features: int, *, train: int = SEQUENCE_TRAIN, test: int = SEQUENCE_TEST, seed: int = 0
) -> Split:
    """A train/test split of sequence task ``task``."""
    return split_of(lambda n, s: sequence_task(task, n, seq_len, features, s), train=train, test=test, seed=seed)


def token_split(
    task: str, seq_len: int, vocab: int, pad: int | None, *, train: int = SEQUENCE_TRAIN, test: int = SEQUENCE_TEST,
    seed: int = 0,
) -> Split:  # fmt: skip
    """A train/test split of token task ``task``."""
    return split_of(lambda n, s: token_task(task, n, seq_len, vocab, pad, s), train=train, test=test, seed=seed)
