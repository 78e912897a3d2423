"""What is particular to the Transformer encoder (embedding, positions, multi-head self-attention with
a padding mask, FFN, pre- or post-norm LayerNorm, pooled or per-position head): counts by the layer
formula, the judge's attention and LayerNorm by hand, padding that reaches no other position, the
dense embedding gradient, and each framework's own attention layer as a witness. Counts, forward
passes, gradients and agreement are in the contract matrix (tests/contract/)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from conftest import framework_backend
from spec import reference as ref
from spec.backend import Backend
from spec.cases import TRANSFORMER, perturbed_params
from spec.data.sequences import duplicate_tokens, majority_tokens
from spec.errors import SpecError
from spec.losses import DEFAULT_LOSS
from spec.models import TRANSFORMER_ZOO, TransformerSpec
from spec.params import count_params, init_params, param_specs, sinusoidal_positions
from spec.tolerances import max_scaled_error, tolerance
from tests.checks import (
    ADAM,
    built,
    judge_adam_step,
)

TRANSFORMERS = {**TRANSFORMER_ZOO, **{spec.name: spec for spec in TRANSFORMER}}


def loss_for(spec: TransformerSpec) -> str:
    return DEFAULT_LOSS[spec.output_activation]


def batch_for(spec: TransformerSpec, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Padded token sequences (every sequence with padding when the spec has a pad token) and
    targets of the head's shape."""
    return spec.example_batch(size, seed)


# --- the spec and the judge alone -----------------------------------------------------------------


def encoder_layer_count(d: int, ff: int) -> int:
    """Weights of one encoder layer as torch's documentation of nn.TransformerEncoderLayer lays them
    out: in_proj (3d × d + 3d), out_proj (d × d + d), linear1 (ff × d + ff), linear2 (d × ff + d),
    norm1 and norm2 (2d each)."""
    return 3 * d * d + 3 * d + d * d + d + ff * d + ff + d * ff + d + 4 * d


def test_counts_follow_the_layer_formula() -> None:
    spec = TRANSFORMER_ZOO["transformer_classifier"]
    d = spec.d_model
    expected = spec.vocab_size * d + spec.num_layers * encoder_layer_count(d, spec.ff_size) + d * 8 + 8
    assert count_params(spec).trainable == expected
    tagger = TRANSFORMER_ZOO["transformer_tagger"]  # learned positions and the final pre-norm LayerNorm
    expected = (tagger.vocab_size + tagger.seq_len) * d + 2 * encoder_layer_count(d, 64) + 2 * d + d + 1
    assert count_params(tagger).trainable == expected


@pytest.mark.parametrize(
    "change, field",
    [
        ({"num_heads": 3}, "num_heads"),
        ({"activation": "tanh"}, "activation"),
        ({"positional": "rotary"}, "positional"),
        ({"norm": "sandwich"}, "norm"),
        ({"layer_norm_epsilon": 0.0}, "layer_norm_epsilon"),
        ({"pad_token": 9}, "pad_token"),
        ({"pad_token": True}, "pad_token"),
        ({"pooling": "max"}, "pooling"),
        ({"pooling": "none"}, "output_activation"),  # softmax over one output per position
        ({"embedding_initializer": "zeros"}, "embedding_initializer"),
        ({"kernel_l2": 1e-4}, "kernel_l2"),
        ({"d_model": 9, "num_heads": 3}, "d_model"),  # sinusoids come in (sin, cos) pairs
    ],
)
def test_bad_transformer_spec_names_the_field(change: dict, field: str) -> None:
    fields = dict(name="t", vocab_size=9, seq_len=4, d_model=8, num_heads=2, ff_size=16, num_layers=1)
    with pytest.raises(SpecError) as info:
        TransformerSpec(**(fields | {"output_size": 3, "output_activation": "softmax"} | change))
    assert info.value.field == field


@pytest.mark.parametrize(
    "tokens, problem",
    [
        (np.zeros((2, 6), np.float32) + 1, "integer"),
        (np.full((2, 6), 7), "ids in"),
        (np.array([[1, 2, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]), "padding only"),
    ],
)
def test_the_judge_refuses_bad_tokens(tokens: np.ndarray, problem: str) -> None:
    spec = TRANSFORMER[0]
    with pytest.raises(SpecError, match=problem):
        ref.forward(spec, init_params(spec, 0), tokens)


def test_sinusoidal_table_by_hand() -> None:
    table = sinusoidal_positions(3, 4)
    np.testing.assert_allclose(table[0], [0.0, 1.0, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(table[1], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)], rtol=1e-14)
    assert table[2, 2] == pytest.approx(math.sin(2 / 10000 ** (2 / 4)), rel=1e-14)


def test_judge_attention_and_layer_norm_by_hand() -> None:
    """One head of width 1, identity projections: each query's output is the softmax(q·k)-weighted
    mean of the values over the unmasked keys; LayerNorm of (1, 2, 3, 4) is (x − 2.5)/√(1.25 + ε)."""
    identity = {"kernel": np.ones((1, 1, 1)), "bias": np.zeros((1, 1))}
    p = {f"a/{proj}/{k}": v for proj in ("query", "key", "value") for k, v in identity.items()}
    p |= {"a/output/kernel": np.ones((1, 1, 1)), "a/output/bias": np.zeros(1)}
    x = np.array([[[1.0], [2.0], [-3.0]]])
    mask = np.array([[True, True, False]])
    got = ref.self_attention(p, "a", x, mask)[0, :, 0]
    for t, q in enumerate(x[0, :, 0]):
        weights = [math.exp(q * k) for k in (1.0, 2.0)]  # key −3 is masked
        assert got[t] == pytest.approx((weights[0] * 1.0 + weights[1] * 2.0) / sum(weights), rel=1e-14)
    norm = {"n/gamma": np.ones(4), "n/beta": np.zeros(4)}
    values = np.array([1.0, 2.0, 3.0, 4.0])
    expected = (values - 2.5) / math.sqrt(1.25 + 1e-5)
    np.testing.assert_allclose(ref.layer_norm(values, norm, "n", 1e-5), expected, rtol=1e-14)


def test_the_key_bias_cannot_change_the_output() -> None:
    """Why the key bias is marked zero_gradient: it adds q·b to every score of a query alike."""
    spec = TRANSFORMER[0]
    params = perturbed_params(spec, 0)
    x, _ = batch_for(spec)
    moved = params | {"encoder_0/attention/key/bias": params["encoder_0/attention/key/bias"] + 3.0}
    np.testing.assert_allclose(ref.logits(spec, moved, x), ref.logits(spec, params, x), rtol=1e-12)
    assert [n for n, i in param_specs(spec).items() if i.zero_gradient] == [
        f"encoder_{i}/attention/key/bias" for i in range(spec.num_layers)
    ]


def test_token_tasks_by_hand() -> None:
    task = majority_tokens(500, 12, 6, 0, seed=1)
    assert task.x.dtype == np.int32 and task.x.shape == (500, 12)
    for tokens, label in zip(task.x[:50], task.y[:50]):
        counts = np.bincount(tokens[tokens != 0], minlength=6)[1:]
        assert counts.argmax() == label and (counts == counts.max()).sum() == 1  # no ties
    assert (task.x[:, 0] != 0).all() and (task.x == 0).any()  # padded, never empty
    np.testing.assert_array_equal(majority_tokens(500, 12, 6, 0, seed=1).x, task.x)
    tags = duplicate_tokens(3, 8, 20, 0, seed=2)
    for tokens, labels in zip(tags.x, tags.y[..., 0]):
        for t, token in enumerate(tokens):
            repeated = token != 0 and (tokens == token).sum() > 1
            assert labels[t] == repeated


# --- every backend against the judge --------------------------------------------------------------


@pytest.mark.parametrize("name", ["transformer_classifier", "transformer_tagger", "tiny_pre_tagger"])
def test_padding_does_not_reach_the_other_positions(backend: Backend, name: str) -> None:
    """What sits at a padded position — the pad token's embedding, a learned position there — does
    not change the outputs at the other positions or the pooled output, on the judge and the
    backend; the same model without the mask does change."""
    spec = TRANSFORMERS[name]
    params = perturbed_params(spec, 2)
    x, _ = batch_for(spec, 16, seed=2)
    real = x != spec.pad_token
    # shifts that vary along the features (a LayerNorm would cancel a constant one)
    rng = np.random.default_rng(2)
    moved = dict(params)
    moved["embedding/embeddings"] = params["embedding/embeddings"].copy()
    moved["embedding/embeddings"][spec.pad_token] += rng.normal(0.0, 2.0, spec.d_model).astype(np.float32)
    if spec.positional == "learned":  # the positions padded in every sequence of the batch
        always_padded = ~real.any(axis=0)
        assert always_padded.any()
        moved["position/embeddings"] = params["position/embeddings"].copy()
        moved["position/embeddings"][always_padded] += rng.normal(0.0, 2.0, spec.d_model).astype(np.float32)
    model = built(backend, spec, params)
    before = backend.logits(model, x)
    backend.load_params(model, moved)
    after = backend.logits(model, x)
    judged = ref.logits(spec, moved, x)
    if spec.pooling == "none":  # per position: the unmasked ones only (padded ones read the pad embedding)
        before, after, judged = before[real], after[real], judged[real]
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(judged, ref.logits(spec, params, x)[real] if spec.pooling == "none" else
                               ref.logits(spec, params, x), rtol=1e-12, atol=1e-12)  # fmt: skip
    unmasked = dataclasses.replace(spec, pad_token=None)
    assert np.abs(ref.logits(unmasked, moved, x) - ref.logits(unmasked, params, x)).max() > 1e-3


def test_a_train_step_updates_embeddings_with_the_dense_gradient(backend: Backend) -> None:
    """A token repeated in the batch contributes the sum of its gradients, and Adam squares that sum:
    the train step's update is the judge's Adam on the backend's own (dense) gradient. (Keras hands
    the optimizer an Embedding's gradient as IndexedSlices, one per occurrence, and its Adam squares
    each one — Σg² instead of (Σg)²; its backend densifies first.)"""
    spec = TRANSFORMER[0]
    params = perturbed_params(spec, 7)
    x, targets = batch_for(spec, 16, seed=7)
    assert len(np.unique(x)) < x.size  # tokens repeat
    model = built(backend, spec, params)
    _, grads = backend.loss_and_grads(model, x, targets, loss_for(spec))
    # as the framework's own loop steps (JAX's eager step compiles op by op: 34 s on a slow CI machine)
    optimizer = backend.make_optimizer(model, ADAM)
    backend.train_step(model, optimizer, x, targets, loss_for(spec), compiled=backend.trains_compiled)
    expected = judge_adam_step(params, grads)
    tol = tolerance("optimizer_step", "float32", backend.device())
    got = backend.export_params(model)["embedding/embeddings"]
    assert max_scaled_error(got, expected["embedding/embeddings"], tol) <= 1.0


# --- the frameworks' own layers as second witnesses ------------------------------------------------


def test_torch_encoder_layer_counts_what_the_spec_counts(request: pytest.FixtureRequest) -> None:
    """A stand-alone ``nn.TransformerEncoderLayer`` holds exactly the spec's per-layer weights."""
    framework_backend(request, "torch")
    from torch import nn

    spec = TRANSFORMER_ZOO["transformer_classifier"]
    layer = nn.TransformerEncoderLayer(spec.d_model, spec.num_heads, spec.ff_size, batch_first=True)
    per_layer = sum(i.size for n, i in param_specs(spec).items() if n.startswith("encoder_0/"))
    assert sum(p.numel() for p in layer.parameters()) == per_layer == encoder_layer_count(spec.d_model, spec.ff_size)


@pytest.mark.parametrize("framework", ["torch", "keras", "jax"])
def test_each_frameworks_attention_layer_agrees_with_the_judge(request: pytest.FixtureRequest, framework: str) -> None:
    """The canonical q/k/v/output weights of one layer, loaded into the framework's own attention
    layer used stand-alone (torch ``nn.MultiheadAttention`` with ``key_padding_mask``, Keras
    ``MultiHeadAttention`` with ``value_mask``, ``nnx.MultiHeadAttention`` with a key mask), give
    the judge's masked self-attention."""
    backend = framework_backend(request, framework)
    spec = TRANSFORMER_ZOO["transformer_classifier"]
    params = perturbed_params(spec, 8)
    model = built(backend, spec, params)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, spec.seq_len, spec.d_model)).astype(np.float32)
    keep = np.arange(spec.seq_len)[None, :] < np.array([[24], [10], [3], [17]])
    p64 = {n: v.astype(np.float64) for n, v in params.items()}
    expected = ref.self_attention(p64, "encoder_0/attention", x.astype(np.float64), keep)
    match framework:
        case "torch":
            import torch

            attention = model.encoder.layers[0].self_attn
            with torch.no_grad():
                got, _ = attention(*[torch.from_numpy(x)] * 3, key_padding_mask=torch.from_numpy(~keep))
            got = got.numpy()
        case "keras":
            import keras

            attention = model.encoders[0].attention
            got = keras.ops.convert_to_numpy(attention(x, x, value_mask=keep))
        case _:
            from flax import nnx

            attention = model.encoders[0].attention
            got = np.asarray(attention(x, mask=nnx.make_attention_mask(np.ones_like(keep), keep)))
    assert max_scaled_error(got, expected, tolerance("forward", "float32", backend.device())) <= 1.0
