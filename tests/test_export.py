"""What a backend exports is what its model computes: every native tensor, changed behind the
contract's back, shows up in ``export_params``, and loading an export gives the same model.

A port reads a model through ``export_params``; a native tensor left out of it (torch's LSTM
``bias_hh``, which torch adds to ``bias_ih``) would make the other frameworks and the judge compute
another model than the one exported, with nothing to say so."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from conftest import framework_backend
from spec import reference as ref
from spec.backend import Backend
from spec.cases import ZOO_CASES
from spec.models import ZOO, ModelSpec
from spec.params import init_params
from spec.tolerances import forward_check, max_scaled_error, tolerance
from tests.checks import built

BATCH = 4
# Every floating native tensor moves by up to SHIFT: a tensor of zeros (biases, running means, torch's
# held bias_hh) by adding U(0, SHIFT), any other by scaling with 1 + U(−SHIFT, SHIFT) — enough that a
# tensor the export leaves out moves the logits far beyond the forward tolerance, and BatchNorm's
# variances stay positive. (Adding U(0, SHIFT) to every weight, as before ResNet-50 joined the zoo,
# gave its 50 layers a growing positive bias: infinite logits, measured.)
SHIFT = 0.05


def _shifted(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if not value.any():
        return (value + rng.uniform(0.0, SHIFT, value.shape)).astype(np.float32)
    return (value * (1.0 + rng.uniform(-SHIFT, SHIFT, value.shape))).astype(np.float32)


def _perturb_torch(model: object, rng: np.random.Generator) -> None:
    import torch

    with torch.no_grad():
        # detached, sharing storage with the model's; buffers left out of the state dict are constants
        # (the sinusoidal position table), which no export holds
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.from_numpy(_shifted(tensor.cpu().numpy(), rng)))


def _perturb_keras(model: object, rng: np.random.Generator) -> None:
    for variable in model.variables:  # weights and non-trainable state (seed generators are ints)
        if "float" in str(variable.dtype):
            variable.assign(_shifted(variable.numpy(), rng))


def _perturb_jax(model: object, rng: np.random.Generator) -> None:
    import jax
    from flax import nnx

    state = nnx.state(model, nnx.Not(nnx.RngState))
    shifted = jax.tree.map(
        lambda a: _shifted(np.asarray(a), rng) if jax.numpy.issubdtype(a.dtype, jax.numpy.floating) else a, state
    )
    nnx.update(model, shifted)


PERTURB: dict[str, Callable[[object, np.random.Generator], None]] = {
    "torch": _perturb_torch,
    "keras": _perturb_keras,
    "jax": _perturb_jax,
}


# every zoo model, in the tier of its forward check (the same passes: logits and the judge's)
ZOO_MODELS = [
    pytest.param(case.spec, id=name, marks=[pytest.mark.exhaustive] if case.tier("forward") == "exhaustive" else [])
    for name, case in ZOO_CASES.items()
]


@pytest.mark.parametrize("spec", ZOO_MODELS)
def test_export_holds_every_native_tensor(backend: Backend, spec: ModelSpec) -> None:
    """After every floating native tensor is shifted natively (the model used once before, so that
    any cached state would go stale), the judge on ``export_params`` computes the model's logits
    (not its outputs: a softmax can saturate); loading that export back changes neither the export
    nor the logits."""
    model = built(backend, spec, init_params(spec, 0))
    x, targets = ZOO_CASES[spec.name].batch(size=BATCH)
    before = backend.logits(model, x)
    PERTURB[backend.framework](model, np.random.default_rng(1))
    outputs = backend.logits(model, x)
    exported = backend.export_params(model)
    tol = tolerance(forward_check(deep=spec.is_deep, training=False), "float32", backend.device())
    assert max_scaled_error(outputs, before, tol) > 1.0, "the perturbation did not reach the logits"
    error = max_scaled_error(outputs, ref.logits(spec, exported, x), tol)
    assert error <= 1.0, f"{backend.name}'s outputs differ from the judge on its export: {error:.3g}× the tolerance"
    for loss in spec.own_losses:  # computed from more than the logits: a GAN's discriminator, a VAE's ELBO
        value, _ = backend.loss_and_grads(model, x, targets, loss)
        judged = ref.loss(spec, exported, x, targets, loss)
        assert value == pytest.approx(judged, rel=tol.rtol), f"its {loss} differs from the judge on its export"
    backend.load_params(model, exported)
    again = backend.export_params(model)
    assert all(np.array_equal(again[name], value) for name, value in exported.items())
    assert max_scaled_error(backend.logits(model, x), outputs, tol) <= 1.0


def test_torch_lstm_state_dict_exports_the_sum_of_its_biases(request: pytest.FixtureRequest) -> None:
    """A real ``nn.LSTM``'s state dict (torch's default init: non-zero ``bias_hh``) loads with
    ``strict=True``; the export holds ``b_ih + b_hh``, which the judge and the other backends
    compute with, and loading the export holds ``bias_hh`` at zero again."""
    backend = framework_backend(request, "torch")
    import torch

    spec = ZOO["lstm_forecaster"]
    model = backend.build(spec, init_params(spec, 0))
    torch.manual_seed(0)
    trained = torch.nn.LSTM(spec.input_size, spec.hidden_size, num_layers=spec.num_layers, batch_first=True)
    model.recurrent.load_state_dict(trained.state_dict(), strict=True)
    assert all(p.abs().sum() > 0 for p in model.held_at_zero)
    x = ZOO_CASES[spec.name].batch(size=BATCH)[0]
    outputs = backend.forward(model, x)
    exported = backend.export_params(model)
    tol = tolerance("forward", "float32", backend.device())
    assert max_scaled_error(outputs, ref.forward(spec, exported, x), tol) <= 1.0
    bias = exported["rnn_0/bias"]
    expected = (trained.bias_ih_l0 + trained.bias_hh_l0).detach().numpy()
    np.testing.assert_allclose(bias, expected, rtol=1e-6, atol=0)
    backend.load_params(model, exported)
    assert all(not p.any() for p in model.held_at_zero)
    assert max_scaled_error(backend.logits(model, x), outputs, tol) <= 1.0
