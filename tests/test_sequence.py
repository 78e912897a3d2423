"""What is particular to the recurrent models (SimpleRNN, LSTM, GRU; stacked, bidirectional; last,
per-step and attention heads): the cells and attention pooling worked by hand, published counts,
torch's held second bias, and the frameworks' own layers as second witnesses. Their counts, forward
passes, gradients and agreement are in the contract matrix (tests/contract/)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import framework_backend
from spec import reference as ref
from spec.cases import SMALL, perturbed_params
from spec.data.sequences import adding_problem, running_sign, sine_forecast
from spec.errors import SpecError
from spec.losses import DEFAULT_LOSS
from spec.models import SEQUENCE_ZOO, RNNSpec
from spec.optimizers import OptimizerSpec
from spec.params import count_params, init_params


def loss_for(spec: RNNSpec) -> str:
    return DEFAULT_LOSS[spec.output_activation]


def batch_for(spec: RNNSpec, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian sequences and targets of the head's shape for the spec's default loss."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, *spec.input_shape)).astype(np.float32)
    shape = (size, spec.seq_len, spec.output_size) if spec.head == "sequence" else (size, spec.output_size)
    if spec.output_activation == "softmax":
        return x, rng.integers(0, spec.output_size, size)
    if spec.output_activation == "sigmoid":
        return x, (rng.uniform(size=shape) > 0.5).astype(np.float32)
    return x, rng.standard_normal(shape).astype(np.float32)


# --- the spec and the judge alone -----------------------------------------------------------------


def test_attention_pooling_weighs_the_steps_by_the_softmax_of_their_scores() -> None:
    """Worked by hand: equal scores average the steps; one score far above the others picks its step."""
    spec = SMALL["tiny_lstm_dot_attention"]  # dot-product scores e_t = h_t · w
    h = np.arange(2 * 6 * 4, dtype=np.float64).reshape(2, 6, 4)
    flat = {"attention_score/kernel": np.zeros((4, 1))}
    np.testing.assert_allclose(ref.attention_pooling(spec, flat, h), h.mean(axis=1), rtol=1e-12)
    picks_the_last = {"attention_score/kernel": np.full((4, 1), 100.0)}  # h grows along the steps
    np.testing.assert_allclose(ref.attention_pooling(spec, picks_the_last, h), h[:, -1], rtol=1e-12)


def test_counts_match_the_published_ones() -> None:
    # Keras's summary of SimpleRNN(50) on one feature: 50·(1 + 50 + 1); Dense(1): 51
    assert count_params(SEQUENCE_ZOO["simple_rnn_classifier"]).trainable == 2_600 + 51
    # torch's 2-layer LSTM(50) on one feature: 4·50·(1 + 50) + 2·200 + 4·50·(50 + 50) + 2·200 = 31,000
    # weights with both bias vectors; the spec keeps one per layer (their sum), 400 fewer.
    assert count_params(SEQUENCE_ZOO["lstm_forecaster"]).trainable == 31_000 - 400 + 51
    # the reset-after GRU keeps both biases, as torch and Keras do: 3·50·(1 + 50 + 2) + 3·50·(50 + 50 + 2)
    assert count_params(SEQUENCE_ZOO["gru_forecaster"]).trainable == 3 * 50 * 53 + 3 * 50 * 102 + 51


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: RNNSpec("r", "transformer", 1, 4, 5, 1, "linear"), "cell"),
        (lambda: RNNSpec("r", "gru", 1, 4, 5, 1, "linear", gru_reset="during"), "gru_reset"),
        (lambda: RNNSpec("r", "lstm", 1, 4, 5, 3, "softmax", head="sequence"), "output_activation"),
        (lambda: RNNSpec("r", "lstm", 1, 4, 5, 1, "linear", head="first"), "head"),
        (lambda: RNNSpec("r", "lstm", 1, 0, 5, 1, "linear"), "hidden_size"),
        (lambda: RNNSpec("r", "lstm", 1, 4, 5, 1, "linear", recurrent_initializer="zeros"), "recurrent_initializer"),
        (lambda: RNNSpec("r", "lstm", 1, 4, 5, 1, "linear", kernel_l2=1e-4), "kernel_l2"),
    ],
)
def test_bad_recurrent_spec_names_the_field(make, field: str) -> None:
    with pytest.raises(SpecError) as info:
        make()
    assert info.value.field == field


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _one_unit_params(kernel: list[float], recurrent: list[float], bias: list | list[list]) -> dict[str, np.ndarray]:
    """Canonical float32 tensors of a one-unit recurrent layer and an identity head."""
    return {
        "rnn_0/kernel": np.array([kernel], np.float32),
        "rnn_0/recurrent_kernel": np.array([recurrent], np.float32),
        "rnn_0/bias": np.array(bias, np.float32),
        "dense_0/kernel": np.ones((1, 1), np.float32),
        "dense_0/bias": np.zeros(1, np.float32),
    }


def test_judge_lstm_and_gru_cells_by_hand() -> None:
    """One unit, two steps, the cell equations written out with scalars. The values are binary
    fractions, exact in float32, so the judge's float64 arithmetic must match to rounding."""
    xs = (0.5, -1.0)
    inputs = np.array([[[xs[0]], [xs[1]]]])
    w, u, b = [0.25, -0.125, 0.5, 0.75], [0.125, 0.375, -0.625, 0.25], [0.0625, -0.125, 0.25, 0.0]
    h = c = 0.0
    for x in xs:
        i, f, g, o = (w[k] * x + b[k] + u[k] * h for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * math.tanh(g)
        h = _sigmoid(o) * math.tanh(c)
    lstm = RNNSpec("one_lstm", "lstm", 1, 1, 2, 1, "linear")
    assert ref.logits(lstm, _one_unit_params(w, u, b), inputs)[0, 0] == pytest.approx(h, rel=1e-12)

    w, u = [0.25, -0.125, 0.5], [0.125, 0.375, -0.625]
    b, rb = [0.0625, -0.125, 0.25], [0.375, -0.25, 0.5]
    for reset in ("after", "before"):
        after = reset == "after"
        h = 0.0
        for x in xs:
            r = _sigmoid(w[0] * x + b[0] + u[0] * h + (rb[0] if after else 0.0))
            z = _sigmoid(w[1] * x + b[1] + u[1] * h + (rb[1] if after else 0.0))
            n = math.tanh(w[2] * x + b[2] + (r * (u[2] * h + rb[2]) if after else u[2] * (r * h)))
            h = (1 - z) * n + z * h
        gru = RNNSpec("one_gru", "gru", 1, 1, 2, 1, "linear", gru_reset=reset)
        params = _one_unit_params(w, u, [b, rb] if after else b)
        assert ref.logits(gru, params, inputs)[0, 0] == pytest.approx(h, rel=1e-12), reset


def test_judge_backward_direction_reads_the_sequence_reversed() -> None:
    """The backward direction of a bidirectional layer is the forward cell run on the reversed
    sequence, its outputs put back in time order."""
    bi = RNNSpec("bi", "gru", 2, 3, 5, 1, "linear", bidirectional=True, head="sequence")
    uni = RNNSpec("uni", "gru", 2, 3, 5, 1, "linear", head="sequence")
    params = perturbed_params(bi, 0)
    x = np.random.default_rng(0).standard_normal((4, 5, 2))
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    backward = ref.recurrent_layer(bi, p64, "rnn_0/backward", x, reverse=True)
    as_forward = {f"rnn_0/{v}": p64[f"rnn_0/backward/{v}"] for v in ("kernel", "recurrent_kernel", "bias")}
    reversed_run = ref.recurrent_layer(uni, as_forward, "rnn_0", x[:, ::-1], reverse=False)[:, ::-1]
    np.testing.assert_allclose(backward, reversed_run, rtol=1e-12)


def test_sequence_tasks_are_deterministic_and_have_their_baselines() -> None:
    task = adding_problem(2000, 20, seed=1)
    assert task.x.shape == (2000, 20, 2) and task.y.shape == (2000, 1)
    assert np.all(task.x[..., 1].sum(axis=1) == 2)
    assert np.mean((task.y - 1.0) ** 2) == pytest.approx(task.baseline, rel=0.1)
    np.testing.assert_array_equal(adding_problem(5, 20, seed=1).x, adding_problem(5, 20, seed=1).x)
    sine = sine_forecast(100, 30, seed=2)
    assert sine.x.shape == (100, 30, 1) and sine.y.shape == (100, 1)
    signs = running_sign(50, 10, seed=3, features=2)
    assert signs.y.shape == (50, 10, 1)
    np.testing.assert_array_equal(signs.y[:, :, 0], np.cumsum(signs.x[..., 0], axis=1) > 0)


# --- every backend against the judge --------------------------------------------------------------


def test_torch_holds_a_second_bias_at_zero_where_the_spec_has_one(request: pytest.FixtureRequest) -> None:
    """torch's LSTM always has ``b_hh`` next to ``b_ih``: its own count for the 2-layer LSTM(50)
    forecaster is torch's published 31,051, of which the spec's model has 30,651 — the 2 × 200
    ``b_hh`` are held at zero, untrained (training both would double the bias's step)."""
    backend = framework_backend(request, "torch")
    spec = SEQUENCE_ZOO["lstm_forecaster"]
    model = backend.build(spec, init_params(spec, 0))
    assert sum(p.numel() for p in model.parameters()) == 31_051
    assert count_params(spec).total == 31_051 - 2 * 200
    assert all(not p.requires_grad and not p.any() for p in model.held_at_zero)
    optimizer = backend.make_optimizer(model, OptimizerSpec("sgd", 0.1))
    x, targets = batch_for(spec, 4)
    backend.train_step(model, optimizer, x, targets, loss_for(spec))
    assert all(not p.any() for p in model.held_at_zero)


# --- the frameworks' own layers as second witnesses ------------------------------------------------


@pytest.mark.parametrize("name", ["lstm_forecaster", "bigru_classifier"])
def test_torch_final_states_are_what_the_head_reads(request: pytest.FixtureRequest, name: str) -> None:
    """torch's own ``h_n`` (each direction's final state) is what the model's head reads: the
    backward direction's final state sits at step 0 of the output sequence, not at step T−1."""
    backend = framework_backend(request, "torch")
    import torch

    spec = SEQUENCE_ZOO[name]
    model = backend.build(spec, perturbed_params(spec, 6))
    x = torch.from_numpy(batch_for(spec, 4, seed=6)[0])
    with torch.no_grad():
        _, h_n = model.recurrent(x)
        if spec.cell == "lstm":
            h_n = h_n[0]  # (h_n, c_n)
        top = h_n[-len(spec.directions) :]  # the top layer's directions
        expected = model.head(torch.cat(list(top), dim=-1))
        np.testing.assert_allclose(model(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("reset_after", [True, False])
def test_flax_gru_cell_agrees_with_the_nnx_gru_cell(request: pytest.FixtureRequest, reset_after: bool) -> None:
    """Our Flax GRU cell (which nnx's cannot replace: it lacks the recurrent bias) computes what
    ``nnx.GRUCell`` does from the same kernels when that bias is zero — and, for the reset-before
    formula, what it cannot: the two differ once the state is non-zero."""
    framework_backend(request, "jax")
    import jax
    from flax import nnx

    from impls.jax.models import GRUCell

    ours = GRUCell(3, 4, reset_after=reset_after, rngs=nnx.Rngs(0))
    theirs = nnx.GRUCell(3, 4, rngs=nnx.Rngs(1))
    theirs.dense_i.kernel.set_value(ours.dense_i.kernel[...])
    theirs.dense_h.kernel.set_value(ours.dense_h.kernel[...])
    input_bias = jax.numpy.asarray(np.random.default_rng(7).uniform(-0.5, 0.5, 12), jax.numpy.float32)
    theirs.dense_i.bias.set_value(input_bias)
    ours.bias.set_value(jax.numpy.stack([input_bias, jax.numpy.zeros(12)]) if reset_after else input_bias)
    x = jax.numpy.asarray(np.random.default_rng(8).standard_normal((5, 6, 3)), jax.numpy.float32)
    got = nnx.RNN(ours)(x)
    expected = nnx.RNN(theirs)(x)
    if reset_after:
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(np.asarray(got[:, 0]), np.asarray(expected[:, 0]), rtol=1e-6, atol=1e-6)
        assert np.abs(np.asarray(got[:, 1:]) - np.asarray(expected[:, 1:])).max() > 1e-3


def test_keras_lstm_final_state_is_what_the_head_reads(request: pytest.FixtureRequest) -> None:
    """A stand-alone ``keras.layers.LSTM`` with ``return_state=True``, given the model's weights,
    returns as its final state exactly the features the model's head reads."""
    backend = framework_backend(request, "keras")
    import keras

    spec = SEQUENCE_ZOO["lstm_forecaster"]
    model = backend.build(spec, perturbed_params(spec, 9))
    x = batch_for(spec, 4, seed=9)[0]
    stack = []
    for index, layer in enumerate(model.recurrent):
        witness = keras.layers.LSTM(spec.hidden_size, return_sequences=True, return_state=True)
        witness.build((None, spec.seq_len, spec.input_size if index == 0 else spec.hidden_size))
        witness.set_weights(layer.get_weights())
        stack.append(witness)
    h = x
    for witness in stack:
        h, final_h, _ = witness(h)
    expected = keras.ops.convert_to_numpy(model.head(final_h))
    np.testing.assert_allclose(backend.logits(model, x), expected, rtol=1e-6, atol=1e-7)
