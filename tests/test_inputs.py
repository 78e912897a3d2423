"""Every backend method that takes a batch refuses one that does not fit the spec, naming the model,
what it takes and what came — before any framework would broadcast, reshape or cast it."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.cases import ZOO_CASES
from spec.errors import BatchError, SpecError
from spec.models import ZOO
from spec.optimizers import OptimizerSpec
from spec.params import init_params

# (model, a batch it must refuse, what the error must say): images, vectors, sequences, token ids —
# beyond the contract matrix's misfits of every case (one feature too many, the wrong kind of values).
BAD_BATCHES = {
    "image_too_large": (
        "cifar_simple_cnn",
        np.zeros((2, 64, 64, 3), np.float32),
        ["(2, 64, 64, 3)", "(batch, 32, 32, 3)"],
    ),
    "image_without_channels": ("digits_cnn", np.zeros((2, 8, 8), np.float32), ["(2, 8, 8)", "(batch, 8, 8, 1)"]),
    "vector_without_batch": ("digits_mlp", np.zeros(64, np.float32), ["(64,)", "(batch, 64)"]),
    "empty_batch": ("digits_mlp", np.zeros((0, 64), np.float32), ["(0, 64)", "batch ≥ 1"]),
    "sequence_without_features": ("lstm_forecaster", np.zeros((2, 30), np.float32), ["(2, 30)", "(batch, 30, 1)"]),
    "sequence_too_short": ("lstm_forecaster", np.zeros((2, 29, 1), np.float32), ["(2, 29, 1)", "(batch, 30, 1)"]),
    "token_id_past_vocabulary": ("transformer_classifier", np.full((2, 24), 9), ["[9, 9]", "ids in [0, 9)"]),
    "negative_token_id": ("transformer_classifier", np.full((2, 24), -1), ["[-1, -1]", "ids in [0, 9)"]),
}
CASES = [pytest.param(*case, id=name) for name, case in BAD_BATCHES.items()]


def _refuses(call, model_name: str, fragments: list[str]) -> None:
    with pytest.raises(BatchError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{model_name}: "), message
    assert all(fragment in message for fragment in fragments), message


@pytest.mark.parametrize(("model_name", "batch", "fragments"), CASES)
def test_every_method_that_takes_a_batch_refuses_a_misfit(
    backend: Backend, model_name: str, batch: np.ndarray, fragments: list[str]
) -> None:
    spec = ZOO[model_name]
    model = backend.build(spec, init_params(spec, 0))
    targets = ZOO_CASES[spec.name].batch()[1][: max(len(batch), 1)]
    loss = spec.default_loss
    optimizer = backend.make_optimizer(model, OptimizerSpec("sgd", 0.1))
    calls = {
        "forward": lambda: backend.forward(model, batch),
        "logits": lambda: backend.logits(model, batch, training=True),
        "compiled logits": lambda: backend.logits(model, batch, compiled=True),
        "loss_and_grads": lambda: backend.loss_and_grads(model, batch, targets, loss),
        "train_step": lambda: backend.train_step(model, optimizer, batch, targets, loss),
        "eager train_step": lambda: backend.train_step(model, optimizer, batch, targets, loss, compiled=False),
    }
    for call in calls.values():
        _refuses(call, spec.name, fragments)


@pytest.mark.parametrize(("model_name", "batch", "fragments"), CASES)
def test_the_judge_refuses_the_same_batches(model_name: str, batch: np.ndarray, fragments: list[str]) -> None:
    spec = ZOO[model_name]
    _refuses(lambda: ref.forward(spec, init_params(spec, 0), batch), spec.name, fragments)


def test_a_vae_encoder_refuses_images_with_their_noise(backend: Backend) -> None:
    """``encode`` takes the images alone, without the ε the model's input carries beside them."""
    spec = ZOO["mnist_vae"]
    model = backend.build(spec, init_params(spec, 0))
    with_noise = ZOO_CASES[spec.name].batch(size=2)[0]
    _refuses(lambda: backend.encode(model, with_noise), spec.name, ["images", "(2, 794)", "(batch, 784)"])
    mean, _ = backend.encode(model, with_noise[:, : spec.input_size])
    assert mean.shape == (2, spec.latent_size)


def test_only_a_vae_is_encoded(backend: Backend) -> None:
    spec = ZOO["digits_mlp"]
    model = backend.build(spec, init_params(spec, 0))
    with pytest.raises(SpecError, match=r"'digits_mlp'.*a VAE"):
        backend.encode(model, np.zeros((2, 64), np.float32))


def test_a_float64_batch_is_taken_as_float32(backend: Backend) -> None:
    """Any float dtype is a valid batch (the backends compute in float32), as numpy's default float64 is."""
    spec = ZOO["digits_mlp"]
    model = backend.build(spec, init_params(spec, 0))
    x = ZOO_CASES[spec.name].batch(size=4)[0]
    np.testing.assert_array_equal(backend.forward(model, x.astype(np.float64)), backend.forward(model, x))


BAD_CLASS_IDS = {
    "class_id_past_the_logits": (np.array([0, 10]), ["[0, 10]", "ids in [0, 10)"]),
    "negative_class_id": (np.array([-1, 3]), ["[-1, 3]", "ids in [0, 10)"]),
    "float_class_ids": (np.array([0.0, 3.0], np.float32), ["dtype float32", "integer class ids"]),
}


@pytest.mark.parametrize(("targets", "fragments"), list(BAD_CLASS_IDS.values()), ids=list(BAD_CLASS_IDS))
def test_class_ids_outside_the_logits_are_refused(backend: Backend, targets: np.ndarray, fragments: list[str]) -> None:
    """Class ids are checked before any loss reads them: past the logits, torch and TensorFlow raise
    deep inside their losses, Optax gives NaN, and reads −1 as the last class."""
    spec = ZOO["digits_mlp"]
    model = backend.build(spec, init_params(spec, 0))
    x = ZOO_CASES[spec.name].batch(size=2)[0]
    loss = "sparse_categorical_crossentropy"
    optimizer = backend.make_optimizer(model, OptimizerSpec("sgd", 0.1))
    for compiled in (False, True):
        step = functools.partial(backend.train_step, model, optimizer, x, targets, loss, compiled=compiled)
        _refuses(step, spec.name, fragments)
    _refuses(lambda: backend.loss_and_grads(model, x, targets, loss), spec.name, fragments)
    _refuses(lambda: ref.loss(spec, init_params(spec, 0), x, targets, loss), spec.name, fragments)


def test_a_classifier_of_fewer_classes_gets_examples_of_its_classes() -> None:
    spec = ZOO["resnet50_finetune"]  # five classes
    _, labels = spec.example_batch(16)
    assert labels.min() >= 0 and labels.max() < spec.output_size == 5 and len(labels) == 16
