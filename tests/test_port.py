"""Users' torch models ported to every backend: the spec read from the module as written, its
tensors in canonical form, and the source, the judge and each target agreeing on one batch."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import get_backend
from spec import port
from spec.backend import Backend, load_backend
from spec.errors import PortError
from spec.layer_paths import observed_points
from spec.layers import Act, Activation, BatchNorm, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten, Pool2D, Reshape
from spec.losses import DEFAULT_LOSS
from spec.models import CNNSpec, ResNetSpec, RNNSpec, TransformerSpec
from spec.optimizers import OptimizerSpec
from spec.params import param_specs, trained_names
from spec.port import verify
from spec.schedules import ScheduleSpec
from spec.tolerances import max_scaled_error, tolerance
from spec.weights import load_weights

torch = pytest.importorskip("torch", reason="the torch importer reads torch modules")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from impls.torch.port import FOLDED_BIASES, import_model, source_layer_outputs, source_outputs  # noqa: E402
from tests.port import torch_models as user  # noqa: E402

# The importers' code is one per source framework; each target's builds are judged by the contract
# tests: `make test` ports to torch, `make test-all` to every backend.
pytestmark = pytest.mark.quick_on("torch")

RELU = Act(Activation("relu"))
SAME_1 = ((1, 1), (1, 1))

# What each of the texts' modules computes, written from its definition (tests/port/torch_models.py)
EXPECTED_SPECS = {
    "DNN": CNNSpec(
        "DNN", (28, 28, 1), (Flatten(), Dense(128), RELU, Dense(64), RELU, Dense(10)), "linear"
    ),
    "SimpleCNN": CNNSpec(
        "SimpleCNN",
        (32, 32, 3),
        (
            Conv2D(32, 3, 1, SAME_1), RELU, Pool2D("max", 2, 2),
            Conv2D(64, 3, 1, SAME_1), RELU, Pool2D("max", 2, 2),
            Flatten(), Dense(512), RELU, Dropout(0.5), Dense(10),
        ),
        "linear",
    ),
    "TimeSeriesLSTM": RNNSpec("TimeSeriesLSTM", "lstm", 1, 50, 20, 1, "linear", num_layers=2),
    "SequentialClassifier": CNNSpec(
        "SequentialClassifier",
        (8, 8, 1),
        (
            Conv2D(4, 3), BatchNorm(0.9, 1e-5, "unbiased"), Act(Activation("leaky_relu", negative_slope=0.1)),
            Pool2D("avg", 2), Flatten(), Dense(5),
        ),
        "softmax",
    ),
    "TransformerClassifier": TransformerSpec(
        "TransformerClassifier", 50, 16, 32, 4, 64, 2, 3, "linear", "relu", "sinusoidal", "post", 1e-5, 0, "mean",
    ),
    "TokenTagger": TransformerSpec(
        "TokenTagger", 30, 12, 16, 2, 32, 2, 5, "linear", "gelu(exact)", "learned", "pre", 1e-5, None, "none",
        scale_embedding=False,
    ),
}  # fmt: skip
INPUT_SHAPES = {
    "DNN": (1, 28, 28),
    "SimpleCNN": (3, 32, 32),
    "TimeSeriesLSTM": (20, 1),
    "SequentialClassifier": (1, 8, 8),
    "TransformerClassifier": (16,),
    "TokenTagger": (12,),
}


def user_module(name: str, seed: int = 0) -> nn.Module:
    """The user's module with torch's default init for ``seed``, its BatchNorm statistics moved off
    their initial 0 and 1 (as a trained model's are)."""
    torch.manual_seed(seed)
    module = getattr(user, name)()
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            child.running_mean.uniform_(-0.5, 0.5)
            child.running_var.uniform_(0.5, 1.5)
    return module


def canonical_batch(shape: tuple[int, ...], size: int = 4, seed: int = 0) -> np.ndarray:
    """Seeded noise for inputs of torch ``shape`` (C, H, W) or (T, F), in the canonical layout."""
    canonical = (*shape[1:], shape[0]) if len(shape) == 3 else shape
    return np.random.default_rng(seed).standard_normal((size, *canonical)).astype(np.float32)


@pytest.fixture(autouse=True)
def torch_source(request: pytest.FixtureRequest) -> None:
    get_backend(request.config, "torch")  # the source framework: skipped with the reason where missing


@pytest.mark.parametrize("name", sorted(EXPECTED_SPECS))
def test_the_texts_modules_are_read_as_written(name: str) -> None:
    imported = import_model(user_module(name), INPUT_SHAPES[name])
    assert imported.spec == EXPECTED_SPECS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_SPECS))
def test_a_ported_module_computes_the_same_on_every_backend(backend: Backend, name: str) -> None:
    """Each of the texts' modules on each backend, against the judge: in evaluation mode, in
    training mode, and by the gradient of every trained tensor."""
    module = user_module(name)
    imported = import_model(module, INPUT_SHAPES[name])
    loss = DEFAULT_LOSS[imported.spec.output_activation]
    if isinstance(imported.spec, TransformerSpec):  # token ids of the embedded tasks, with padding
        x = port.verification_batch(imported.spec, loss)[0]
    else:
        x = canonical_batch(INPUT_SHAPES[name])
    y = port.seeded_targets(imported.spec, loss, len(x))
    report = verify(imported, source_outputs(module), x, [backend], source_layer_outputs(module, imported), y=y)
    source, target = report.checks
    assert source.ok and target.ok, report
    assert source.error is not None and source.error < 1e-5  # float32 rounding: the source is the judge's model
    if name == "SequentialClassifier" and backend.name != "torch":  # torch's unbiased running variance
        assert target.note is not None and "running_variance" in target.note
    else:
        assert target.note is None
    source_training, training = report.training  # the source's own training pass, then the target's
    assert source_training.executor == "source" and source_training.ok, report
    assert report.loss == loss and training.ok and training.error is not None
    assert [check.part for check in report.gradients or []] == trained_names(imported.spec, loss)
    assert report.ok, report
    # inside the model too: every layer or point, on the source and the target, in both modes
    assert report.layers and report.training_layers and all(layer.ok for layer in report.layers), report
    if not isinstance(imported.spec, CNNSpec):
        assert [layer.part for layer in report.layers] == observed_points(imported.spec)
    # SimpleCNN's dropout is judged at rate 0 in training mode, where the judge draws no masks
    assert ("dropout at rate 0" in (report.training_note or "")) == (name == "SimpleCNN")


# torch's RMSprop with momentum under a cosine schedule, as a torch loop sets it up: ε outside the
# root (torch/optim/rmsprop.py) and the rate outside the momentum buffer, neither of which Keras's or
# Optax's own RMSprop can express.
LOOP_STEPS, LOOP_BATCH, WINDOW = 5, 16, 20
TORCH_RMSPROP = OptimizerSpec(
    "rmsprop",
    ScheduleSpec("cosine", 1e-2, LOOP_STEPS, floor=0.0),
    rho=0.99,
    epsilon=1e-4,
    epsilon_placement="outside_sqrt",
    momentum=0.9,
)


def sine_windows(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Windows of sine waves of random phase, each of ``shape`` (WINDOW values), and each one's next
    value, (N, 1)."""
    start = np.random.default_rng(0).uniform(0, 2 * np.pi, LOOP_STEPS * LOOP_BATCH)
    series = np.sin(start[:, None] + 0.3 * np.arange(WINDOW + 1)).astype(np.float32)
    return series[:, :WINDOW].reshape(-1, *shape), series[:, WINDOW:]


def torch_loop(
    module: nn.Module, optimizer: torch.optim.Optimizer, shape: tuple[int, ...], schedule: bool = False
) -> None:
    """A torch training loop as the texts write one: MSE on the windows, a scheduler stepped per step."""
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=LOOP_STEPS) if schedule else None
    x, y = sine_windows(shape)
    for step in range(LOOP_STEPS):
        batch = slice(step * LOOP_BATCH, (step + 1) * LOOP_BATCH)
        optimizer.zero_grad()
        F.mse_loss(module(torch.from_numpy(x[batch])), torch.from_numpy(y[batch])).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def ported_loop(backend: Backend, imported: port.Imported, opt: OptimizerSpec) -> dict[str, np.ndarray]:
    """:func:`torch_loop`'s steps on ``backend``'s port of ``imported``, by its port of ``opt``."""
    model = backend.build(imported.spec, imported.params)
    optimizer = backend.make_optimizer(model, opt, ported=True)
    x, y = sine_windows(imported.spec.input_shape)
    for step in range(LOOP_STEPS):
        batch = slice(step * LOOP_BATCH, (step + 1) * LOOP_BATCH)
        backend.train_step(model, optimizer, x[batch], y[batch], "mse")
    return backend.export_params(model)


def test_a_torch_training_loop_continues_identically_in_every_port(backend: Backend) -> None:
    """A window forecaster trained by a torch loop — ``RMSprop(momentum=0.9)`` stepped with
    ``CosineAnnealingLR`` — and the same steps on each ported model, which runs its backend's port of
    torch's rule where its own optimizers cannot express it: the weights after the loop agree."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(WINDOW, 32), nn.Tanh(), nn.Linear(32, 1))
    before = import_model(module, (WINDOW,))
    rmsprop = torch.optim.RMSprop(module.parameters(), lr=1e-2, alpha=0.99, eps=1e-4, momentum=0.9)
    torch_loop(module, rmsprop, (WINDOW,), schedule=True)
    after = import_model(module, (WINDOW,)).params
    tol = tolerance("trajectory", "float32", backend.device())
    got = ported_loop(backend, before, TORCH_RMSPROP)
    for name in after:
        assert max_scaled_error(got[name], after[name], tol) <= 1.0, name
    # the rule matters: with ε inside the root (Keras's and Optax's RMSprop) the weights end out of tolerance
    other = ported_loop(backend, before, dataclasses.replace(TORCH_RMSPROP, epsilon_placement="inside_sqrt"))
    assert max(max_scaled_error(other[name], after[name], tol) for name in after) > 10.0


def test_a_torch_rnn_s_two_biases_train_twice_as_fast_as_their_fold() -> None:
    """torch trains an LSTM's ``b_ih`` and ``b_hh`` apart with the same gradient, so their sum moves
    twice as far as one bias by the same rule: the port says so in its notes. Measured in torch alone:
    the two-bias loop equals the spec's parametrisation (``b_hh`` frozen at zero, ``b_ih`` the sum)
    with the bias's rate doubled, and leaves it out of tolerance at the same rate."""
    module = user_module("TimeSeriesLSTM")
    assert import_model(module, INPUT_SHAPES["TimeSeriesLSTM"]).notes == (FOLDED_BIASES,)
    torch_loop(module, torch.optim.SGD(module.parameters(), lr=0.05), INPUT_SHAPES["TimeSeriesLSTM"])
    two_biases = import_model(module, INPUT_SHAPES["TimeSeriesLSTM"]).params

    def folded_loop(bias_rate: float) -> dict[str, np.ndarray]:
        folded = user_module("TimeSeriesLSTM")
        for name, tensor in folded.lstm.named_parameters():
            if name.startswith("bias_hh"):
                getattr(folded.lstm, name.replace("hh", "ih")).data += tensor.data
                tensor.data.zero_()
                tensor.requires_grad_(False)
        biases = [p for n, p in folded.named_parameters() if n.startswith("lstm.bias_ih")]
        rest = [p for n, p in folded.named_parameters() if not n.startswith("lstm.bias")]
        rates = [{"params": biases, "lr": bias_rate}, {"params": rest}]
        torch_loop(folded, torch.optim.SGD(rates, lr=0.05), INPUT_SHAPES["TimeSeriesLSTM"])
        return import_model(folded, INPUT_SHAPES["TimeSeriesLSTM"]).params

    tol = tolerance("trajectory", "float32", "cpu")
    doubled, same = folded_loop(0.1), folded_loop(0.05)
    for name in two_biases:
        assert max_scaled_error(doubled[name], two_biases[name], tol) <= 1.0, name
    assert max_scaled_error(same["rnn_0/bias"], two_biases["rnn_0/bias"], tol) > 10.0


def test_a_transformer_port_notes_what_training_would_change() -> None:
    """The tutorials' classifier: its dropout and its fixed padding row, neither of which changes the
    outputs, are named in the port's notes; a model with neither has no notes."""
    notes = import_model(user_module("TransformerClassifier"), INPUT_SHAPES["TransformerClassifier"]).notes
    assert len(notes) == 2 and "dropout (0.1) is left out" in notes[0] and "padding_idx=0" in notes[1]
    assert import_model(user_module("TokenTagger"), INPUT_SHAPES["TokenTagger"]).notes == ()


def test_an_lstm_s_two_biases_are_folded_into_one() -> None:
    module = user_module("TimeSeriesLSTM")
    imported = import_model(module, INPUT_SHAPES["TimeSeriesLSTM"])
    for index in range(2):
        summed = getattr(module.lstm, f"bias_ih_l{index}") + getattr(module.lstm, f"bias_hh_l{index}")
        np.testing.assert_array_equal(imported.params[f"rnn_{index}/bias"], summed.detach().numpy())
        assert np.abs(getattr(module.lstm, f"bias_hh_l{index}").detach().numpy()).max() > 0.01  # not a zero dropped


@pytest.mark.parametrize("name", ["SequentialClassifier", "SimpleCNN"])  # BatchNorm; dropout
def test_the_source_s_training_pass_is_judged_and_leaves_it_as_it_was(name: str) -> None:
    """The source in training mode: BatchNorm on the batch's statistics, dropout at rate 0; its
    running statistics, dropout rates and mode are as they were after."""
    module = user_module(name)
    module.eval()
    imported = import_model(module, INPUT_SHAPES[name])
    before = {name: value.clone() for name, value in module.state_dict().items()}
    dropouts = [child.p for child in module.modules() if isinstance(child, nn.Dropout)]
    x = canonical_batch(INPUT_SHAPES[name], size=8)
    report = verify(
        imported, source_outputs(module), x, [], source_layer_outputs(module, imported),
        y=port.seeded_targets(imported.spec, DEFAULT_LOSS[imported.spec.output_activation], len(x)),
    )  # fmt: skip
    assert [check.executor for check in report.training] == ["source"] and report.ok, report
    assert report.training_layers and all(set(layer.errors) == {"source"} for layer in report.training_layers)
    assert not module.training and dropouts == [child.p for child in module.modules() if isinstance(child, nn.Dropout)]
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_the_source_s_functional_dropout_is_at_rate_0_in_its_training_pass() -> None:
    def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m.fc2(F.dropout(F.relu(m.fc1(x)), 0.5, training=m.training))

    torch.manual_seed(0)
    module = Forward(forward, fc1=nn.Linear(4, 8), fc2=nn.Linear(8, 3))
    imported = import_model(module, (4,), name="functional_dropout")
    x = canonical_batch((4,), size=16)
    report = verify(imported, source_outputs(module), x, [], y=port.seeded_targets(imported.spec, "mse", len(x)))
    assert report.training[0].ok and report.ok, report
    assert F.dropout is torch.nn.functional.dropout and F.dropout.__module__ == "torch.nn.functional"


def test_a_source_that_computes_otherwise_in_training_mode_is_caught() -> None:
    """A forward that scales its output in training mode only: right in evaluation, not in training."""
    torch.manual_seed(0)
    module = Forward(lambda m, x: m.fc(x) * 1.5 if m.training else m.fc(x), fc=nn.Linear(4, 3))
    module.eval()  # the importer traces the forward as it is in this mode
    imported = import_model(module, (4,), name="scaled_in_training")
    x = canonical_batch((4,))
    report = verify(imported, source_outputs(module), x, [], y=port.seeded_targets(imported.spec, "mse", len(x)))
    assert report.checks[0].ok and not report.training[0].ok and not report.ok


def test_a_masked_tagger_ports_once_its_encoder_computes_every_position(backend: Backend) -> None:
    """The tagger refused on nested tensors (see CANNOT_BE_PORTED) ports with enable_nested_tensor=False."""
    module = MaskedTagger(nested=False)
    imported = import_model(module, (12,))
    assert isinstance(imported.spec, TransformerSpec) and imported.spec.pooling == "none"
    x = port.verification_batch(imported.spec, "mse")[0]
    assert (x == 0).any()  # padding in the batch
    report = verify(imported, source_outputs(module), x, [backend], source_layer_outputs(module, imported))
    assert report.ok, report


def test_a_torchvision_resnet_is_matched_by_its_names() -> None:
    torch.manual_seed(0)
    imported = import_model(user.resnet18(num_classes=1000), (3, 224, 224), name="resnet18")
    spec = imported.spec
    assert isinstance(spec, ResNetSpec) and (spec.stem, spec.block, spec.stage_blocks) == (
        "imagenet",
        "basic",
        (2, 2, 2, 2),
    )
    trainable = sum(int(np.prod(info.shape)) for info in param_specs(spec).values() if info.trainable)
    assert trainable == 11_689_512  # torchvision's resnet18
    assert imported.sources["stage_1/block_0/shortcut_conv"] == "layer2.0.downsample.0"


def test_a_torchvision_resnet_ports_at_any_size_and_class_count(backend: Backend) -> None:
    """A torchvision-named ResNet-18 of 7 classes on 32×32 images, in evaluation and training mode;
    a network this deep has no element-wise float32 gradients to judge, and the report says so."""
    torch.manual_seed(1)
    module = user.resnet18(num_classes=7)
    module.eval()
    imported = import_model(module, (3, 32, 32))
    x = canonical_batch((3, 32, 32))
    y = port.seeded_targets(imported.spec, "mse", len(x))  # its logits, as torchvision's forward returns them
    report = verify(imported, source_outputs(module), x, [backend], source_layer_outputs(module, imported), y=y)
    assert report.ok, report
    assert [check.executor for check in report.training] == ["source", backend.name] and report.gradients is None
    assert report.training_note is not None and "deep network" in report.training_note
    # every convolution, BatchNorm and block, on the source and the target; in training mode, the target
    points = observed_points(imported.spec)
    assert [layer.part for layer in report.layers or []] == points and len(points) == 2 + 8 * 5 + 3 * 2 + 1
    assert all(None not in layer.errors.values() for layer in report.layers or [])
    assert [layer.part for layer in report.training_layers or []] == points
    # in training mode shown, not judged: BatchNorm on 4 values per channel at the last stage
    assert all(set(layer.scaled.values()) == {None} for layer in report.training_layers or [])
    assert port.INSIDE_DEEP_TRAINING in report.training_note
    sources = {layer.part: layer.source for layer in report.layers or []}
    assert (
        sources["stage_1/block_0"] == "layer2.0" and sources["stage_1/block_0/shortcut_bn"] == "layer2.0.downsample.1"
    )


# --- what cannot be ported, named -----------------------------------------------------------------


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(x + torch.relu(self.fc1(x)))


class LogSoftmaxNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.fc(x), dim=1)


class BidirectionalLast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(2, 3, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.fc(out[:, -1, :])


class Forward(nn.Module):
    """A module whose ``forward`` is the given function of its layers: the misreadings to refuse."""

    def __init__(self, forward: Callable[..., torch.Tensor], **layers: nn.Module) -> None:
        super().__init__()
        self.call = forward
        for name, layer in layers.items():
            self.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(self, x)


def torchvision_resnet(change: Callable[[nn.Module], None]) -> nn.Module:
    model = user.resnet18(num_classes=3)
    change(model)
    return model


class SoftmaxAfterFc(user.ResNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(x), dim=1)


def lstms(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out, _ = module.lstm(x)
    out, _ = module.second(out)
    return module.fc(out[:, -1, :])


def transformer(change: Callable[[nn.Module], None]) -> nn.Module:
    """The tutorials' Transformer classifier with one change a port must not miss."""
    torch.manual_seed(0)
    module = user.TransformerClassifier()
    with torch.no_grad():
        change(module)
    return module


class MaskedTagger(nn.Module):
    """A post-norm tagger under a padding mask, its encoder as torch builds it by default (nested
    tensors in evaluation) or computing every position."""

    def __init__(self, nested: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tokens = nn.Embedding(30, 16, padding_idx=0)
        self.positions = nn.Parameter(0.02 * torch.randn(1, 12, 16))
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=nested)
        self.tag = nn.Linear(16, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tag(self.encoder(self.tokens(tokens) + self.positions, src_key_padding_mask=tokens == 0))


def tied_transformer() -> nn.Module:
    """The tutorials' classifier with a language-model head tied to the token embedding."""
    module = transformer(lambda m: setattr(m, "fc", nn.Linear(32, 50)))
    module.fc.weight = module.embedding.weight
    return module


class TwoEncoders(nn.Module):
    """Two encoders (or, with ``norm_first``, one pre-norm encoder without its final LayerNorm)."""

    def __init__(self, norm_first: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 8)
        self.positions = nn.Parameter(torch.zeros(1, 8, 8))
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.second = None if norm_first else nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.fc = nn.Linear(8, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.embedding(tokens) + self.positions)
        return self.fc((x if self.second is None else self.second(x)).mean(dim=1))


CANNOT_BE_PORTED = {
    "residual": (Residual(), (4,), "node add", "residual connection"),
    "unknown_layer": (
        nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)),
        (4,),
        "1 (LayerNorm)",
        "not a layer",
    ),
    "grouped_conv": (
        nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(16, 2)),
        (2, 4, 4),
        "0 (Conv2d)",
        "groups=1 (it has 2)",
    ),
    "log_softmax": (LogSoftmaxNet(), (4,), "log_softmax", "return the logits"),
    "bidirectional_last_step": (BidirectionalLast(), (5, 2), "getitem", "backward direction"),
    "wrong_width": (
        nn.Sequential(nn.Flatten(), nn.Linear(10, 2)),
        (3, 2, 2),
        "1 (Linear)",
        "in_features=10, but its input has 12",
    ),
    "no_flatten": (nn.Sequential(nn.Linear(4, 2)), (2, 4, 4), "0 (Linear)", "Dense layers only on vectors"),
    "softmax_over_the_batch": (
        nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=0)),
        (4,),
        "1 (Softmax)",
        "softmax over dim 0",
    ),
    "softmax_function_over_the_batch": (
        Forward(lambda m, x: torch.softmax(m.fc(x), dim=0), fc=nn.Linear(4, 3)),
        (4,),
        "softmax",
        "softmax over dim 0",
    ),
    "dropout_in_evaluation": (
        Forward(lambda m, x: m.fc(F.dropout(x, 0.5)), fc=nn.Linear(4, 3)),
        (4,),
        "dropout",
        "training=True",
    ),
    "view_not_by_batch": (
        Forward(lambda m, x: m.fc(x.view(4, -1)), fc=nn.Linear(8, 3)),
        (2, 2, 2),
        "view",
        "(batch, features) only",
    ),
    "tensor_in_forward": (
        Forward(lambda m, x: m.fc(x) * m.fc.weight.sum(), fc=nn.Linear(4, 3)),
        (4,),
        "get_attr",
        "used directly in forward",
    ),
    "two_recurrent_layers": (
        Forward(
            lstms, lstm=nn.LSTM(2, 3, batch_first=True), second=nn.LSTM(3, 3, batch_first=True), fc=nn.Linear(3, 1)
        ),
        (5, 2),
        "node second",
        "a recurrent model the importer reads",
    ),
    "last_step_after_the_head": (
        Forward(lambda m, x: m.fc(m.lstm(x)[0])[:, -1], lstm=nn.LSTM(2, 3, batch_first=True), fc=nn.Linear(3, 1)),
        (5, 2),
        "node fc",
        "a recurrent model the importer reads",
    ),
    "resnet_leaky_relu": (
        torchvision_resnet(lambda m: setattr(m, "relu", nn.LeakyReLU(0.3))),
        (3, 32, 32),
        "relu (LeakyReLU)",
        "nn.ReLU",
    ),
    "resnet_one_batchnorm_apart": (
        torchvision_resnet(lambda m: setattr(m.layer2[1].bn1, "eps", 0.1)),
        (3, 32, 32),
        "layer2.1.bn1",
        "eps, momentum",
    ),
    "transformer_two_encoders": (
        TwoEncoders(),
        (8,),
        "encoder, second",
        "one nn.TransformerEncoder (found 2)",
    ),
    "transformer_concatenated_positions": (
        transformer(
            lambda m: m.pos_encoder.pe.copy_(torch.cat([m.pos_encoder.pe[..., 0::2], m.pos_encoder.pe[..., 1::2]], -1))
        ),
        (16,),
        "pos_encoder.pe",
        "not the interleaved sinusoidal table",
    ),
    "transformer_layer_outside_the_encoder": (
        transformer(lambda m: setattr(m, "norm", nn.LayerNorm(32))),
        (16,),
        "norm.weight, norm.bias",
        "no place for",
    ),
    "transformer_tied_head": (
        tied_transformer(),
        (16,),
        "embedding.weight = fc.weight",
        "tied weights",
    ),
    "transformer_tagger_on_nested_tensors": (
        MaskedTagger(),
        (12,),
        "forward",
        "nested tensors in evaluation, which give zeros at padded positions",
    ),
    "transformer_unknown_pooling": (
        transformer(
            lambda m: setattr(m, "forward", lambda src: m.fc(m.encoder(m.pos_encoder(m.embedding(src))).amax(dim=1)))
        ),
        (16,),
        "forward",
        "none of the forms",
    ),
    "transformer_norm_first_without_final_norm": (
        TwoEncoders(norm_first=True),
        (8,),
        "encoder.norm",
        "a final LayerNorm after a pre-norm encoder",
    ),
    "resnet_softmax_after_fc": (
        SoftmaxAfterFc(user.BasicBlock, [2, 2, 2, 2], 3),
        (3, 32, 32),
        "forward",
        "does not end at fc",
    ),
}


def test_only_a_model_that_gives_its_padded_positions_one_row_is_told_of_nested_tensors() -> None:
    """The advice about nested tensors is for a per-token head over zeros; a forward that pools
    otherwise (amax), though its encoder could run on nested tensors too, is told only its form."""
    module = CANNOT_BE_PORTED["transformer_unknown_pooling"][0]
    assert module.encoder.use_nested_tensor
    with pytest.raises(PortError, match="none of the forms") as caught:
        import_model(module, (16,))
    assert "nested" not in str(caught.value)


@pytest.mark.parametrize(("module", "shape", "where", "why"), CANNOT_BE_PORTED.values(), ids=CANNOT_BE_PORTED.keys())
def test_what_cannot_be_ported_is_named(module: nn.Module, shape: tuple[int, ...], where: str, why: str) -> None:
    with pytest.raises((PortError,)) as caught:
        import_model(module, shape, name="user_model")
    message = str(caught.value)
    assert message.startswith("user_model: ") and where in message and why in message, message


# --- the command ------------------------------------------------------------------------------------

USER_FILE = """
import torch.nn.functional as F
from torch import nn


class DNN(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.view(-1, 64))))
"""


def write_user_model(tmp_path: Path, hidden: int = 32) -> tuple[Path, Path]:
    """The user's file defining DNN, and a training checkpoint of it as the texts save one."""
    source = tmp_path / "user_dnn.py"
    source.write_text(USER_FILE)
    module = port.load_builder(f"{source}:DNN", {"hidden": hidden})
    checkpoint = tmp_path / "dnn.pt"
    torch.save({"epoch": 3, "model_state_dict": module.state_dict()}, checkpoint)
    return source, checkpoint


def test_the_command_ports_a_file_and_its_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, checkpoint = write_user_model(tmp_path)
    out = tmp_path / "out"
    args = [
        f"{source}:DNN",
        "--input-shape",
        "1,8,8",
        "--checkpoint",
        str(checkpoint),
        "--to",
        "torch",
        "--out",
        str(out),
    ]
    assert port.main(args) == 0
    assert "[port] verifying on torch" in capsys.readouterr().err  # progress
    report = json.loads((out / "port.json").read_text())
    assert report["ok"] and [c["executor"] for c in report["checks"]] == ["source", "torch"]
    namespace: dict[str, object] = {}
    exec((out / "DNN_spec.py").read_text(), namespace)  # the spec file defines the spec it ported
    spec = namespace["SPEC"]
    assert spec == CNNSpec("DNN", (8, 8, 1), (Flatten(), Dense(32), RELU, Dense(10)), "linear")
    weights = load_weights(out / "DNN.npz", spec)
    state = torch.load(checkpoint, weights_only=True)["model_state_dict"]
    np.testing.assert_array_equal(weights["dense_0/kernel"], state["fc1.weight"].numpy().T)  # the checkpoint's
    markdown = (out / "port.md").read_text()
    assert "| torch |" in markdown and "## Training mode (loss mse)" in markdown
    assert report["loss"] == "mse" and [g["part"] for g in report["gradients"]] == trained_names(spec, "mse")
    # the same weights as safetensors, and in the target's own file, which its model loads
    for name, value in load_weights(out / "DNN.safetensors", spec).items():
        np.testing.assert_array_equal(value, weights[name])
    target = load_backend("torch")
    model = target.build(spec, {name: np.zeros_like(value) for name, value in weights.items()})
    target.load_native(model, out / "DNN_torch.pt")
    np.testing.assert_array_equal(target.export_params(model)["dense_1/kernel"], weights["dense_1/kernel"])


def test_a_port_out_of_tolerance_exits_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from impls.torch import port as torch_port

    source, _ = write_user_model(tmp_path)
    runner = torch_port.source_outputs
    monkeypatch.setattr(
        torch_port,
        "source_outputs",
        lambda module: lambda x, training=False: runner(module)(x, training=training) + 1e-3,
    )
    args = [f"{source}:DNN", "--input-shape", "1,8,8", "--to", "torch", "--out", str(tmp_path / "out")]
    assert port.main(args) == 1
    assert "**NO**" in (tmp_path / "out" / "port.md").read_text()


def test_a_port_out_of_tolerance_at_one_layer_only_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outputs agree, but the source's first layer, as the hooks read it, does not."""
    from impls.torch import port as torch_port

    source, _ = write_user_model(tmp_path)
    layers = torch_port.source_layer_outputs

    def off_at_fc1(module: nn.Module, imported: port.Imported) -> Callable[..., dict[str, np.ndarray]]:
        def run(x: np.ndarray, training: bool = False) -> dict[str, np.ndarray]:
            found = dict(layers(module, imported)(x, training=training))
            return {**found, "dense_0": found["dense_0"] + 1e-2}

        return run

    monkeypatch.setattr(torch_port, "source_layer_outputs", off_at_fc1)
    args = [f"{source}:DNN", "--input-shape", "1,8,8", "--to", "torch", "--out", str(tmp_path / "out")]
    assert port.main(args) == 1
    report = json.loads((tmp_path / "out" / "port.json").read_text())
    assert not report["ok"] and all(check["scaled"] <= 1.0 for check in report["checks"])


@pytest.mark.parametrize("fault", ["other_model", "truncated", "missing", "not_a_state_dict"])
def test_a_bad_checkpoint_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str) -> None:
    source, checkpoint = write_user_model(tmp_path)
    if fault == "other_model":  # a checkpoint of the same class with another width: shapes differ
        (tmp_path / "other").mkdir()
        _, checkpoint = write_user_model(tmp_path / "other", hidden=16)
    elif fault == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    elif fault == "missing":
        checkpoint = tmp_path / "nowhere.pt"
    else:
        torch.save({"epoch": 3}, checkpoint)
    args = [f"{source}:DNN", "--input-shape", "1,8,8", "--checkpoint", str(checkpoint), "--to", "torch"]
    assert port.main([*args, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"checkpoint {str(checkpoint)!r}" in error, error
    expected = {
        "other_model": "size mismatch for fc1.weight",
        "truncated": "not a readable torch file",
        "missing": "does not exist",
        "not_a_state_dict": "holds no state dict",
    }[fault]
    assert expected in error, error


def test_the_command_judges_training_on_the_user_s_batch_and_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--batch`` with targets and ``--loss``: the training checks run on them; targets of the wrong
    shape for the loss are refused naming the shapes (exit 2)."""
    source, _ = write_user_model(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    batch = tmp_path / "batch.npz"
    np.savez(batch, x=x, y=rng.standard_normal((6, 10)).astype(np.float32))
    args = [f"{source}:DNN", "--input-shape", "1,8,8", "--to", "torch", "--batch", str(batch), "--loss", "mse"]
    assert port.main([*args, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "port.json").read_text())
    assert report["loss"] == "mse" and [check["executor"] for check in report["training"]] == ["source", "torch"]
    np.savez(batch, x=x, y=rng.standard_normal((6, 3)).astype(np.float32))
    assert port.main([*args, "--out", str(tmp_path / "bad")]) == 2
    assert "targets: got 'shape (6, 3)'; allowed: shape (6, 10) for mse" in capsys.readouterr().err
    # a softmax classifier's class ids: one out of range, which the judge would wrap or index past
    logits = "self.fc2(F.relu(self.fc1(x.view(-1, 64))))"
    source.write_text(source.read_text().replace(f"return {logits}", f"return F.softmax({logits}, dim=1)"))
    classifier = [f"{source}:DNN", "--input-shape", "1,8,8", "--to", "torch", "--batch", str(batch)]
    np.savez(batch, x=x, y=np.array([0, 1, 2, 3, 4, 9]))
    assert port.main([*classifier, "--out", str(tmp_path / "ids")]) == 0
    np.savez(batch, x=x, y=np.array([0, 1, 2, 3, 4, 10]))
    assert port.main([*classifier, "--out", str(tmp_path / "ids")]) == 2
    assert "class ids in [0, 10)" in capsys.readouterr().err


def test_a_model_the_command_cannot_find_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, _ = write_user_model(tmp_path)
    assert port.main([f"{source}:CNN", "--input-shape", "1,8,8"]) == 2
    assert "defines no CNN" in capsys.readouterr().err


# --- where a port parts -----------------------------------------------------------------------------


def test_the_first_layer_a_source_computes_differently_is_named() -> None:
    """A source whose second convolution differs from what was imported (as a forward the importer
    misread would): the layers before it agree, and the report names it, its source and its causes."""
    module = user_module("SimpleCNN")
    imported = import_model(module, INPUT_SHAPES["SimpleCNN"])
    with torch.no_grad():
        module.conv2.weight.mul_(1.001)
    layers = source_layer_outputs(module, imported)
    report = verify(imported, source_outputs(module), canonical_batch(INPUT_SHAPES["SimpleCNN"]), [], layers)
    assert [layer.part for layer in report.layers or []] == ["conv_0", "conv_1", "dense_0", "dense_1"]
    first = report.first_divergence
    assert first is not None and (first.part, first.source) == ("conv_1", "conv2")
    assert report.layers[0].ok and not report.checks[0].ok
    # the unpadded pool and the ReLU before it have no catalogued causes; the convolution has
    assert first.likely_causes == ("image layout",)


def test_the_first_point_a_resnet_source_computes_differently_is_named() -> None:
    """A torchvision-named ResNet whose second stage's second convolution changed after import: the
    points before it agree, and the report names it, then its block, with their sources and causes."""
    torch.manual_seed(1)
    module = user.resnet18(num_classes=5)
    imported = import_model(module, (3, 32, 32))
    with torch.no_grad():
        module.layer2[0].conv2.weight.mul_(1.001)
    x = canonical_batch((3, 32, 32))
    report = verify(imported, source_outputs(module), x, [], source_layer_outputs(module, imported))
    parted = [layer.part for layer in report.layers or [] if not layer.ok]
    assert parted[:2] == ["stage_1/block_0/conv_b", "stage_1/block_0/bn_b"] and "stage_1/block_0" in parted
    first = report.first_divergence
    assert first is not None and first.source == "layer2.0.conv2"
    assert first.likely_causes == ("image layout",)  # its padding is explicit, as torch's
    before = (report.layers or [])[: [layer.part for layer in report.layers or []].index(first.part)]
    assert len(before) == 2 + 2 * 5 + 2 and all(layer.ok for layer in before)
    assert "**The port parts at stage_1/block_0/conv_b** (`layer2.0.conv2`)" in port.report_markdown(report, imported)


def test_the_first_encoder_layer_a_transformer_source_computes_differently_is_named() -> None:
    module = transformer(lambda m: None)
    imported = import_model(module, INPUT_SHAPES["TransformerClassifier"])
    with torch.no_grad():
        module.encoder.layers[1].linear2.weight.mul_(1.01)
    x = port.verification_batch(imported.spec, "sparse_categorical_crossentropy")[0]
    report = verify(imported, source_outputs(module), x, [], source_layer_outputs(module, imported))
    assert [layer.part for layer in report.layers or []] == ["embedding", "encoder_0", "encoder_1", "dense_0"]
    first = report.first_divergence
    assert first is not None and (first.part, first.source) == ("encoder_1", "encoder.layers.1")
    assert "attention weights" in first.likely_causes and report.layers is not None and report.layers[1].ok


def test_the_first_recurrent_layer_a_target_computes_differently_is_named(backend: Backend) -> None:
    """torch's one nn.LSTM holds both layers of the stack: on torch, the first layer is not
    observed, and the port parts at the second."""
    module = user_module("TimeSeriesLSTM")
    imported = import_model(module, INPUT_SHAPES["TimeSeriesLSTM"])
    x = canonical_batch(INPUT_SHAPES["TimeSeriesLSTM"])
    layers = source_layer_outputs(module, imported)
    report = verify(imported, source_outputs(module), x, [Mistaken(backend, "rnn_0/kernel")], layers)
    stacked = backend.name == "torch"
    first = report.first_divergence
    assert first is not None and first.part == ("rnn_1" if stacked else "rnn_0") and first.source == "lstm"
    assert first.likely_causes == ("recurrent gate order", "recurrent biases")
    assert report.layers is not None and report.layers[0].errors["source"] is None  # the source is torch's too
    assert (report.layers[0].errors[backend.name] is None) == stacked
    assert "| rnn_0 | `lstm` | not observed |" in port.report_markdown(report, imported)


class Mistaken:
    """A backend that loads one tensor a thousandth off: a target whose port is wrong at one layer."""

    def __init__(self, backend: Backend, tensor: str) -> None:
        self.backend, self.tensor = backend, tensor

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    def build(self, spec: object, params: dict[str, np.ndarray], **options: object) -> object:
        if self.tensor in params:
            params = {**params, self.tensor: params[self.tensor] * 1.001}
        return self.backend.build(spec, params, **options)


def test_the_first_layer_a_target_computes_differently_is_named(backend: Backend) -> None:
    """In evaluation and in training mode, the first layer a target computes out of tolerance."""
    module = user_module("DNN")
    imported = import_model(module, INPUT_SHAPES["DNN"])
    x, mistaken = canonical_batch(INPUT_SHAPES["DNN"]), Mistaken(backend, "dense_1/kernel")
    y = port.seeded_targets(imported.spec, "mse", len(x))
    report = verify(imported, source_outputs(module), x, [mistaken], source_layer_outputs(module, imported), y=y)
    for first, layers in (
        (report.first_divergence, report.layers),
        (report.first_training_divergence, report.training_layers),
    ):
        assert first is not None and first.part == "dense_1" and first.source == "fc2"
        assert first.scaled[backend.name] > 1.0 and first.scaled.get("source", 0.0) <= 1.0
        assert layers is not None and layers[0].ok
    assert not report.ok


class MistakenGradient:
    """A backend whose gradient of one tensor is a hundredth off: a target whose backward pass is
    wrong at one layer while its forward is right."""

    def __init__(self, backend: Backend, tensor: str) -> None:
        self.backend, self.tensor = backend, tensor

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    def loss_and_grads(self, *args: object, **kwargs: object) -> tuple[float, dict[str, np.ndarray]]:
        value, grads = self.backend.loss_and_grads(*args, **kwargs)  # type: ignore[arg-type]
        return value, {**grads, self.tensor: grads[self.tensor] * 1.01}


def test_the_tensor_whose_gradient_parts_first_is_named(backend: Backend) -> None:
    """The tensor nearest the output whose gradient a target computes out of tolerance, with its
    source layer; the forward passes and the other tensors' gradients stay within it."""
    module = user_module("SimpleCNN")
    imported = import_model(module, INPUT_SHAPES["SimpleCNN"])
    x = canonical_batch(INPUT_SHAPES["SimpleCNN"])
    y = port.seeded_targets(imported.spec, "mse", len(x))
    report = verify(imported, source_outputs(module), x, [MistakenGradient(backend, "conv_1/bias")], y=y, loss="mse")
    first = report.first_gradient_divergence
    assert first is not None and (first.part, first.source) == ("conv_1/bias", "conv2")
    assert first.likely_causes == ("image layout",)
    assert [check.part for check in report.gradients or [] if not check.ok] == ["conv_1/bias"]
    assert all(check.ok for check in report.checks + report.training) and not report.ok


def test_gradients_are_judged_on_the_examples_off_their_kinks(backend: Backend) -> None:
    """A ReLU input exactly at its kink (a blank example through a zero bias, as Keras initialises
    them) makes that example's float32 gradients ill-posed: without batch statistics tying the
    examples together, the gradients are judged on the others, and the report says so."""
    module = user_module("DNN")
    with torch.no_grad():
        module.fc1.bias.zero_()
    imported = import_model(module, INPUT_SHAPES["DNN"])
    x = canonical_batch(INPUT_SHAPES["DNN"])
    x[0] = 0.0
    report = verify(imported, source_outputs(module), x, [backend], y=port.seeded_targets(imported.spec, "mse", len(x)))
    assert report.training_note is not None and "gradients judged on 3 of 4 examples" in report.training_note
    assert report.gradients is not None and report.ok, report


def test_gradients_are_not_judged_where_batch_statistics_tie_an_example_on_a_kink() -> None:
    """With BatchNorm on the batch's statistics no example's pass is its own: a batch with a ReLU
    input on its kink (a BatchNorm scaled to zero) has no gradient judged, and the report says why."""
    spec = CNNSpec("tied", (6, 6, 1), (Conv2D(2, 3), BatchNorm(0.9, 1e-3), RELU, Flatten(), Dense(3)), "linear")
    params = {name: np.full(info.shape, 0.5, np.float32) for name, info in param_specs(spec).items()}
    params["batchnorm_0/gamma"] = params["batchnorm_0/beta"] = np.zeros(2, np.float32)
    imported = port.Imported("torch", spec, params, {})
    x = canonical_batch((1, 6, 6))
    report = verify(
        imported, lambda batch, training=False: batch[:, :3, 0, 0], x, [], y=port.seeded_targets(spec, "mse", len(x))
    )
    assert report.gradients is None
    assert report.training_note is not None and report.training_note.startswith("gradients not judged: on this batch")


def test_every_likely_cause_is_a_row_of_the_differences_catalogue() -> None:
    catalogue = (Path(__file__).parents[1] / "docs" / "framework-differences.md").read_text()
    topics = {line.split("|")[1].strip() for line in catalogue.splitlines() if line.startswith("| ")}
    layers = [
        Dense(2), Conv2D(2, 3, padding="same"), ConvTranspose2D(2, 3), Flatten(), Reshape((2, 2, 1)),
        Pool2D("max", 3, 1, "same"), Pool2D("avg", 3, 1, "same", count_padding=True), BatchNorm(),
        Act(Activation("gelu", approximate="tanh")), Act(Activation("leaky_relu", negative_slope=0.2)),
    ]  # fmt: skip
    for layer in layers:
        causes = port.likely_causes(layer)
        assert causes and set(causes) <= topics, (layer, set(causes) - topics)


def test_what_the_importer_reads_beside_the_chain_is_no_branch() -> None:
    """``x.size(0)`` taken from the input after other layers, and an in-place activation after a
    layer whose output the report keeps: a correct port, layer by layer too."""

    def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m.fc(m.relu(m.conv(x)).view(x.size(0), -1))

    torch.manual_seed(0)
    module = Forward(forward, conv=nn.Conv2d(1, 2, 3), relu=nn.ReLU(inplace=True), fc=nn.Linear(2 * 6 * 6, 3))
    imported = import_model(module, (1, 8, 8), name="size_of_the_input")
    x = canonical_batch((1, 8, 8))
    report = verify(imported, source_outputs(module), x, [], source_layer_outputs(module, imported))
    assert report.ok and report.layers is not None and all(layer.ok for layer in report.layers), report


def test_the_command_verifies_a_model_the_embedded_data_does_not_fit(tmp_path: Path) -> None:
    """A vector of 20 features: the command runs it on seeded noise of its shape."""
    source = tmp_path / "user_mlp.py"
    source.write_text("from torch import nn\n\nMODEL = nn.Sequential(nn.Linear(20, 8), nn.Tanh(), nn.Linear(8, 2))\n")
    assert port.main([f"{source}:MODEL", "--input-shape", "20", "--to", "torch", "--out", str(tmp_path / "out")]) == 0
