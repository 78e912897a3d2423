"""Users' Keras models ported to every backend: Sequential and functional models read layer by
layer, their weights in canonical form, and the source, the judge and each target agreeing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import get_backend
from spec import port
from spec.backend import Backend, keras_engine, keras_executor
from spec.data import digits
from spec.errors import PortError, WeightFileError
from spec.layers import Act, Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, Pool2D
from spec.losses import DEFAULT_LOSS
from spec.models import CNNSpec, RNNSpec, TransformerSpec
from spec.optimizers import OptimizerSpec
from spec.port import verify
from spec.tolerances import max_scaled_error, tolerance

# The importers' code is one per source framework; each target's builds are judged by the contract
# tests: `make test` ports to torch, `make test-all` to every backend.
pytestmark = pytest.mark.quick_on("torch")

RELU = Act(Activation("relu"))
SHAPES = {
    "mnist_dense": (784,),
    "mnist_convnet": (28, 28, 1),
    "lstm_forecaster": (20, 1),
    "bigru_classifier": (10, 2),
    "functional_mlp": (16,),
    "text_transformer": (16,),
}
# What each model computes, written from its definition (tests/port/keras_models.py)
EXPECTED_SPECS = {
    "mnist_dense": CNNSpec("mnist_dense", (784,), (Dense(512), RELU, Dense(10)), "softmax"),
    "mnist_convnet": CNNSpec(
        "mnist_convnet",
        (28, 28, 1),
        (
            Conv2D(32, 3),
            RELU,
            Pool2D("max", 2),
            Conv2D(64, 3),
            RELU,
            Pool2D("max", 2),
            Flatten(),
            Dropout(0.5),
            Dense(10),
        ),
        "softmax",
    ),
    "lstm_forecaster": RNNSpec("lstm_forecaster", "lstm", 1, 16, 20, 1, "linear", num_layers=2),
    "bigru_classifier": RNNSpec("bigru_classifier", "gru", 2, 8, 10, 1, "sigmoid", bidirectional=True),
    "functional_mlp": CNNSpec(
        "functional_mlp",
        (16,),
        (Dense(8), Act(Activation("gelu", approximate="exact")), BatchNorm(0.99, 1e-3), Dense(3)),
        "linear",
    ),
    # positions from a second Embedding, post-norm with ε 1e-6, no padding mask, heads of key_dim 16
    "text_transformer": TransformerSpec(
        "text_transformer", 40, 16, 16, 2, 32, 1, 2, "softmax", "relu", "learned", "post", 1e-6, None, "mean",
        scale_embedding=False, key_dim=16,
    ),
}  # fmt: skip


@pytest.fixture(autouse=True)
def keras_source(request: pytest.FixtureRequest) -> None:
    # the source framework, on this process's Keras backend: skipped with the reason where missing
    get_backend(request.config, keras_executor(keras_engine()) or "keras")


def user_model(name: str, seed: int = 0) -> object:
    """The model with Keras's own init for ``seed``, its BatchNormalization statistics moved off their
    initial 0 and 1 (as a trained model's are)."""
    import keras

    from tests.port import keras_models

    keras.utils.set_random_seed(seed)
    model = getattr(keras_models, name)()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.uniform(-0.5, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
    return model


def importer() -> port.Importer:
    return port.load_importer("keras")


@pytest.mark.parametrize("name", sorted(EXPECTED_SPECS))
def test_keras_models_are_read_as_written(name: str) -> None:
    model = user_model(name)
    assert port.framework_of(model) == "keras"
    assert importer().import_model(model, SHAPES[name]).spec == EXPECTED_SPECS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_SPECS))
def test_a_ported_keras_model_computes_the_same_on_every_backend(backend: Backend, name: str) -> None:
    model, keras_port = user_model(name), importer()
    imported = keras_port.import_model(model, SHAPES[name])
    x = np.random.default_rng(0).standard_normal((4, *SHAPES[name])).astype(np.float32)
    if isinstance(imported.spec, TransformerSpec):  # token ids of the embedded tasks
        x = port.verification_batch(imported.spec, "sparse_categorical_crossentropy")[0]
    layers = keras_port.source_layer_outputs(model, imported)
    y = port.seeded_targets(imported.spec, DEFAULT_LOSS[imported.spec.output_activation], len(x))
    report = verify(imported, keras_port.source_outputs(model), x, [backend], layers, y=y)
    assert report.ok, report
    assert all(layer.ok and set(layer.errors) == {"source", backend.name} for layer in report.layers or [])
    assert report.layers and report.layers[-1].errors["source"] is not None  # the head, at least, observed
    if isinstance(imported.spec, RNNSpec):  # and each recurrent layer, its directions joined
        assert all(layer.errors["source"] is not None for layer in report.layers), report.layers
    # in training mode too, and every trained tensor's gradient — on this backend, unless it cannot
    # build the model (torch: heads wider than d_model / heads), which the training row says
    source_training, training = report.training  # the source's own training pass, then the target's
    assert source_training.executor == "source" and source_training.ok, report
    assert report.gradients is not None and len(report.gradients) > 0
    judged_here = set() if training.unsupported else {backend.name}
    assert all(set(check.errors) == judged_here for check in report.gradients)


@pytest.mark.parametrize("name", ["functional_mlp", "text_transformer"])  # BatchNormalization; dropout
def test_the_source_s_training_pass_leaves_it_as_it_was(name: str) -> None:
    """The source's training pass (dropout at rate 0, BatchNormalization on the batch's statistics)
    is judged, and its moving statistics and dropout rates are as they were after."""
    import keras

    model, keras_port = user_model(name), importer()
    imported = keras_port.import_model(model, SHAPES[name])
    x = np.random.default_rng(0).standard_normal((8, *SHAPES[name])).astype(np.float32)
    if isinstance(imported.spec, TransformerSpec):
        x = port.verification_batch(imported.spec, "sparse_categorical_crossentropy")[0]
    before = [np.array(variable.value) for variable in model.non_trainable_variables]
    rates = [layer.rate for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dropout)]
    y = port.seeded_targets(imported.spec, DEFAULT_LOSS[imported.spec.output_activation], len(x))
    layers = keras_port.source_layer_outputs(model, imported)
    report = verify(imported, keras_port.source_outputs(model), x, [], layers, y=y)
    assert [check.executor for check in report.training] == ["source"] and report.ok, report
    assert rates == [layer.rate for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dropout)]
    for old, variable in zip(before, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(old, np.array(variable.value))


def test_a_transformer_port_notes_the_dropout_it_leaves_out() -> None:
    imported = importer().import_model(user_model("text_transformer"), SHAPES["text_transformer"])
    assert imported.notes == (
        "the source's dropout (0.1) is left out: the spec's Transformer has none, so training draws no masks",
    )


def test_a_gru_s_gates_come_in_the_canonical_order() -> None:
    """Keras holds a GRU's gates z, r, h; the canonical order is r, z, n."""
    model = user_model("bigru_classifier")
    imported = importer().import_model(model, SHAPES["bigru_classifier"])
    keras_kernel = np.asarray(model.layers[0].forward_layer.cell.kernel)
    z, r, h = np.split(keras_kernel, 3, axis=-1)
    np.testing.assert_array_equal(imported.params["rnn_0/forward/kernel"], np.concatenate([r, z, h], axis=-1))


def subclassed() -> object:
    import keras

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x: object) -> object:
            return self.dense(x)

    return Net()


def residual() -> object:
    import keras

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Add()([inputs, hidden])))


def shared_dense() -> object:
    """One Dense called twice in a functional model: its weights tied to two uses."""
    import keras

    inputs, dense = keras.Input((4,)), keras.layers.Dense(4)
    return keras.Model(inputs, keras.layers.Dense(2)(dense(dense(inputs))))


def layer_norm() -> object:
    import keras

    return keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization(), keras.layers.Dense(2)])


def hidden_head() -> object:
    """Keras's Transformer example as printed: a Dense(20, relu) between the pooling and the head."""
    from tests.port import keras_models

    return keras_models.text_transformer(extra_dense=True)


def selu() -> object:
    import keras

    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="selu"), keras.layers.Dense(2)])


def sequential(*layers: Callable[[Any], object], shape: tuple[int, ...] = (4,)) -> Callable[[], object]:
    """A builder of ``keras.Sequential([Input(shape), *layers])``, each layer made from ``keras``."""

    def build() -> object:
        import keras

        return keras.Sequential([keras.Input(shape), *(make(keras) for make in layers)])

    return build


CANNOT_BE_PORTED = {
    "masking": (
        sequential(
            lambda k: k.layers.Masking(0.0), lambda k: k.layers.LSTM(4), lambda k: k.layers.Dense(1), shape=(10, 2)
        ),
        (10, 2),
        "masking (Masking)",
        "no masking",
    ),
    "transformer_with_a_hidden_head": (
        hidden_head,
        (16,),
        "dense",
        "then one Dense head",
    ),
    "subclassed": (subclassed, (4,), "Net", "subclassed keras.Model"),
    "residual": (residual, (4,), "add", "not a chain"),
    "shared_weights": (shared_dense, (4,), "dense", "a layer called twice (shared weights)"),
    "unknown_layer": (layer_norm, (4,), "LayerNormalization", "not a layer the specs know"),
    "unknown_activation": (selu, (4,), "dense", "activation 'selu'"),
    "users_own_activation": (
        sequential(lambda k: k.layers.Dense(3, activation=lambda x: x * 2)),
        (4,),
        "dense",
        "not one of keras.activations",
    ),
    "flatten_channels_first": (
        sequential(
            lambda k: k.layers.Flatten(data_format="channels_first"), lambda k: k.layers.Dense(2), shape=(2, 2, 3)
        ),
        (2, 2, 3),
        "flatten",
        "channels_last",
    ),
    "capped_relu": (
        sequential(lambda k: k.layers.Dense(3), lambda k: k.layers.ReLU(max_value=6.0), lambda k: k.layers.Dense(2)),
        (4,),
        "ReLU",
        "max_value=6.0",
    ),
    "softmax_over_the_batch": (
        sequential(lambda k: k.layers.Dense(3), lambda k: k.layers.Softmax(axis=0)),
        (4,),
        "softmax",
        "axis=-1",
    ),
    "dense_before_a_recurrent_layer": (
        sequential(lambda k: k.layers.Dense(3), lambda k: k.layers.LSTM(2), lambda k: k.layers.Dense(1), shape=(5, 4)),
        (5, 4),
        "dense",
        "recurrent layers, then one Dense head",
    ),
    "spatial_dropout": (
        sequential(
            lambda k: k.layers.Conv2D(2, 3),
            lambda k: k.layers.SpatialDropout2D(0.3),
            lambda k: k.layers.Flatten(),
            lambda k: k.layers.Dense(2),
            shape=(5, 5, 1),
        ),
        (5, 5, 1),
        "SpatialDropout2D",
        "a plain Dropout",
    ),
    "bidirectional_backward_relu": (
        sequential(
            lambda k: k.layers.Bidirectional(
                k.layers.GRU(3), backward_layer=k.layers.GRU(3, activation="relu", go_backwards=True)
            ),
            lambda k: k.layers.Dense(1),
            shape=(5, 2),
        ),
        (5, 2),
        "GRU",
        "activation='tanh'",
    ),
}


@pytest.mark.parametrize(("build", "shape", "where", "why"), CANNOT_BE_PORTED.values(), ids=CANNOT_BE_PORTED.keys())
def test_what_cannot_be_ported_from_keras_is_named(
    build: Callable[[], object], shape: tuple[int, ...], where: str, why: str
) -> None:
    with pytest.raises(PortError) as caught:
        importer().import_model(build(), shape, name="user_model")
    message = str(caught.value)
    assert message.startswith("user_model: ") and where in message and why in message, message


def test_a_keras_checkpoint_is_loaded_or_named(tmp_path: Path) -> None:
    trained, fresh = user_model("mnist_dense", seed=1), user_model("mnist_dense", seed=2)
    saved = tmp_path / "mnist.weights.h5"
    trained.save_weights(saved)
    importer().load_checkpoint(fresh, saved)
    np.testing.assert_array_equal(np.asarray(fresh.layers[0].kernel), np.asarray(trained.layers[0].kernel))
    corrupt = tmp_path / "corrupt.weights.h5"
    corrupt.write_bytes(saved.read_bytes()[:500])
    with pytest.raises(WeightFileError, match=r"corrupt\.weights\.h5"):
        importer().load_checkpoint(fresh, corrupt)
    other = user_model("functional_mlp")
    with pytest.raises(WeightFileError, match=r"mnist\.weights\.h5"):
        importer().load_checkpoint(other, saved)


def test_the_command_ports_a_keras_file_and_its_weights(tmp_path: Path) -> None:
    source = tmp_path / "user_keras.py"
    source.write_text(
        "import keras\n\n"
        "def build():\n"
        "    layers = [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation='relu'),\n"
        "              keras.layers.Flatten(), keras.layers.Dense(3, activation='softmax')]\n"
        "    return keras.Sequential(layers, name='tiny')\n"
    )
    model = port.load_builder(f"{source}:build", {})
    saved = tmp_path / "tiny.weights.h5"
    model.save_weights(saved)
    out = tmp_path / "out"
    args = [f"{source}:build", "--input-shape", "8,8,1", "--checkpoint", str(saved), "--to", "keras", "--out", str(out)]
    assert port.main(args) == 0
    report = (out / "port.md").read_text()
    assert "# Port of tiny from keras" in report and "| conv_0 | `conv2d" in report
    assert (out / "tiny.safetensors").is_file()
    # the Keras target's model as a .keras file, which Keras rebuilds from the spec in its config
    import keras

    rebuilt = keras.saving.load_model(out / "tiny_keras.keras")
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(rebuilt.infer(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


# Keras's RMSprop as its defaults are (keras/src/optimizers/rmsprop.py): ε inside the square root
KERAS_RMSPROP = OptimizerSpec("rmsprop", 1e-3, rho=0.9, epsilon=1e-7, epsilon_placement="inside_sqrt")
FIT_BATCH, FIT_STEPS = 32, 4


def test_a_keras_fit_continues_identically_in_every_port(backend: Backend) -> None:
    """The texts' recipe — a Sequential softmax classifier compiled with RMSprop and trained by
    ``model.fit`` — and the same steps on each ported model: torch's optimizers cannot express
    Keras's RMSprop, so its port runs the ported rule; the weights after ``fit`` agree."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    keras_port = importer()
    before = keras_port.import_model(model, (64,))
    split = digits((64,))
    x, y = split.x_train[: FIT_BATCH * FIT_STEPS], split.y_train[: FIT_BATCH * FIT_STEPS]
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=FIT_BATCH, epochs=1, shuffle=False, verbose=0)
    after = keras_port.import_model(model, (64,)).params

    def steps(opt: OptimizerSpec) -> dict[str, np.ndarray]:
        ported = backend.build(before.spec, before.params)
        optimizer = backend.make_optimizer(ported, opt, ported=True)
        for step in range(FIT_STEPS):
            batch = slice(step * FIT_BATCH, (step + 1) * FIT_BATCH)
            backend.train_step(ported, optimizer, x[batch], y[batch], "sparse_categorical_crossentropy")
        return backend.export_params(ported)

    tol = tolerance("trajectory", "float32", backend.device())
    got = steps(KERAS_RMSPROP)
    for name in after:
        assert max_scaled_error(got[name], after[name], tol) <= 1.0, name
    # the rule matters: torch's and Optax's other RMSprop (ε outside the root) ends out of tolerance
    if backend.framework != "keras":
        other = steps(dataclasses.replace(KERAS_RMSPROP, epsilon_placement="outside_sqrt"))
        assert max(max_scaled_error(other[name], after[name], tol) for name in after) > 10.0


def test_keras_s_ported_rule_is_saved_and_rebuilt_with_its_spec() -> None:
    """Keras's port of torch's RMSprop is a registered optimizer whose config is the spec's:
    ``keras.optimizers.deserialize`` (what loading a compiled ``.keras`` file calls) rebuilds it."""
    import keras

    from impls.keras.optimizers import PortedRule

    opt = dataclasses.replace(KERAS_RMSPROP, epsilon_placement="outside_sqrt", momentum=0.5)
    rebuilt = keras.optimizers.deserialize(keras.optimizers.serialize(PortedRule(opt)))
    assert isinstance(rebuilt, PortedRule) and rebuilt.opt == opt
