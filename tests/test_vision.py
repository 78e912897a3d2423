"""What is particular to the vision models (CNNs, pooling, BatchNorm, ResNets): published counts,
padding and flatten conventions, running statistics after a step, the unbiased running variance
where a framework has it, transfer learning with a frozen backbone, torch's memory format. Their
counts, forward passes, gradients and agreement are in the contract matrix (tests/contract/)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from conftest import framework_backend
from spec import reference as ref
from spec.backend import Backend, engine_of
from spec.cases import SMALL, perturbed_params
from spec.data import digits, jittered
from spec.errors import SpecError, UnsupportedOption
from spec.layers import BatchNorm, Conv2D, Dense, Flatten, Pool2D, resolve_padding
from spec.models import ZOO, CNNSpec, ResNetSpec
from spec.optimizers import OptimizerSpec
from spec.params import count_params, init_params, param_specs, trainable_names
from spec.tolerances import max_scaled_error, tolerance

BATCH = 16  # BatchNorm over 16 images: statistics of a 1×1 feature map are still well conditioned

# Published parameter counts (trainable): the Keras MNIST convnet example, torchvision's resnet18
# (ImageNet stem, 1000 classes: 11,689,512) with a 10-class head, and ResNet-18 with the CIFAR stem.
PUBLISHED_COUNTS = {
    "mnist_cnn": 34_826,
    "resnet18_cifar": 11_173_962,
    "resnet18_imagenet_stem": 11_689_512 - (512 * 1000 + 1000) + (512 * 10 + 10),
    # torchvision's resnet50 with a 5-class head in place of its 1,000-class one (2048 features)
    "resnet50_finetune": 25_557_032 - (2048 * 1000 + 1000) + (2048 * 5 + 5),
}

LOSS = "sparse_categorical_crossentropy"


def batch_for(spec: CNNSpec | ResNetSpec, size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Digits with a little noise (see :func:`spec.data.jittered`)."""
    split = digits(spec.input_shape)
    return jittered(split.x_test[:size], seed=size), split.y_test[:size]


# --- specs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PUBLISHED_COUNTS))
def test_spec_counts_match_published_counts(name: str) -> None:
    # the counts of the models as published: every layer trainable (a fine-tuning spec freezes some)
    assert count_params(dataclasses.replace(ZOO[name], frozen=())).trainable == PUBLISHED_COUNTS[name]


def test_resnet50_for_imagenet_has_torchvisions_count_and_depth() -> None:
    spec = dataclasses.replace(ZOO["resnet50_finetune"], input_shape=(224, 224, 3), num_classes=1000, frozen=())
    assert count_params(spec).trainable == 25_557_032  # torchvision.models.resnet50().parameters()
    # its BatchNorms' running means and variances: keras.applications.ResNet50's "Non-trainable params"
    assert count_params(spec).non_trainable == 53_120
    assert spec.describe().startswith("ResNet-50 ")
    # torchvision's ResNet50_Weights list 4.089 GFLOPS, counting multiply-adds (two operations here)
    assert round(spec.forward_flops(1) / 2e9, 3) == 4.089
    frozen = count_params(ZOO["resnet50_finetune"])
    assert frozen.trainable == 2048 * 5 + 5  # the new head alone


def test_resnet18_for_imagenet_has_torchvisions_count() -> None:
    spec = ResNetSpec("resnet18", (224, 224, 3), 1000, "imagenet")
    # 11,689,512 parameters; BatchNorm adds 2 × 4,800 running statistics
    assert count_params(spec).trainable == 11_689_512
    assert count_params(spec).non_trainable == 9_600


@pytest.mark.parametrize(
    ("size", "window", "stride", "pads"),
    [
        ((16, 16), (3, 3), (2, 2), ((0, 1), (0, 1))),  # TF's asymmetric 'same': the extra pixel bottom/right
        ((15, 15), (3, 3), (2, 2), ((1, 1), (1, 1))),
        ((8, 8), (3, 3), (1, 1), ((1, 1), (1, 1))),
        ((32, 32), (7, 7), (2, 2), ((2, 3), (2, 3))),  # not torchvision's stem padding of 3
        ((5, 6), (1, 1), (2, 2), ((0, 0), (0, 0))),
    ],
)
def test_same_padding_follows_the_tensorflow_rule(size, window, stride, pads) -> None:
    assert resolve_padding("same", size, window, stride) == pads


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Conv2D(0, 3), "conv.filters"),
        (lambda: Conv2D(4, (3, 0)), "conv.kernel_size[1]"),
        (lambda: Conv2D(4, 3, padding="full"), "conv.padding"),
        (lambda: Conv2D(4, 3, padding=((1, -1), (0, 0))), "conv.padding"),
        (lambda: Pool2D("min", 2), "pool.kind"),
        (lambda: Pool2D("avg", 2, padding="same"), "pool.count_padding"),
        (lambda: Pool2D("max", 2, count_padding=True), "pool.count_padding"),
        (lambda: BatchNorm(momentum=1.0), "batchnorm.momentum"),
        (lambda: BatchNorm(epsilon=0.0), "batchnorm.epsilon"),
        (lambda: BatchNorm(running_variance="sample"), "batchnorm.running_variance"),
        (lambda: CNNSpec("c", (8, 8, 1), (Conv2D(4, 3), Flatten()), "softmax"), "layers"),
        (lambda: CNNSpec("c", (8, 8, 1), (Dense(4),), "softmax"), "layers[0] (Dense)"),
        (lambda: CNNSpec("c", (8, 8, 1), (Flatten(), Conv2D(4, 3), Dense(2)), "softmax"), "layers[1] (Conv2D)"),
        (lambda: CNNSpec("c", (4, 4, 1), (Conv2D(4, 5), Flatten(), Dense(2)), "softmax"), "layers[0] (Conv2D)"),
        (lambda: CNNSpec("c", (8, 8), (Flatten(), Dense(2)), "softmax"), "input_shape"),
        (lambda: ResNetSpec("r", (32, 32, 3), 10, "mnist"), "stem"),
        (lambda: ResNetSpec("r", (32, 32, 3), 10, "cifar", (2, 2), (8,)), "widths"),
        (lambda: ResNetSpec("r", (32, 32, 3), 10, "cifar", batchnorm=0.9), "batchnorm"),
    ],
)
def test_bad_vision_spec_names_the_field(make, field: str) -> None:
    with pytest.raises(SpecError) as info:
        make()
    assert info.value.field.startswith(field), info.value


def test_flattened_kernel_rows_are_in_nhwc_order() -> None:
    spec = ZOO["mnist_cnn"]
    info = param_specs(spec)["dense_0/kernel"]
    assert info.flattened_from == (5, 5, 64) and info.shape == (5 * 5 * 64, 10)


# --- every backend against the judge --------------------------------------------------------------


def test_one_train_step_updates_running_statistics_as_the_judge(backend: Backend) -> None:
    spec = SMALL["tiny_bottleneck"]
    params = perturbed_params(spec, 5)
    x, labels = batch_for(spec)
    model = backend.build(spec, params)
    optimizer = backend.make_optimizer(model, OptimizerSpec("sgd", 0.1))
    # as the framework's own loop steps (JAX's eager step compiles op by op: 16 s on a slow CI machine)
    backend.train_step(model, optimizer, x, labels, LOSS, compiled=backend.trains_compiled)
    _, state = ref.logits_and_state(spec, params, x, training=True)
    after = backend.export_params(model)
    for name, value in state.items():
        assert max_scaled_error(after[name], value, tolerance("forward", "float32", backend.device())) <= 1.0, name
    assert any(not np.array_equal(after[n], params[n]) for n in trainable_names(spec)), "no parameter moved"


def test_unbiased_running_variance_where_the_framework_has_it(backend: Backend) -> None:
    """torch updates its running variance with the unbiased batch variance; Keras and Flax cannot,
    and say so naming the field and what they compute instead."""
    spec = dataclasses.replace(
        SMALL["batchnorm_cnn"],
        name="unbiased",
        layers=tuple(
            dataclasses.replace(layer, running_variance="unbiased") if isinstance(layer, BatchNorm) else layer
            for layer in SMALL["batchnorm_cnn"].layers
        ),
    )
    params = perturbed_params(spec, 6)
    if backend.name != "torch":
        with pytest.raises(UnsupportedOption, match=r"batchnorm\.running_variance") as info:
            backend.build(spec, params)
        assert info.value.native == "biased"
        return
    x, _ = batch_for(spec)
    model = backend.build(spec, params)
    backend.logits(model, x, training=True)
    _, state = ref.logits_and_state(spec, params, x, training=True)
    _, biased = ref.logits_and_state(SMALL["batchnorm_cnn"], params, x, training=True)
    after = backend.export_params(model)
    tol = tolerance("forward", "float32", backend.device())
    for name in state:
        assert max_scaled_error(after[name], state[name], tol) <= 1.0, name
    variance = "batchnorm_1/moving_variance"  # after the flatten: n = 16, a factor 16/15
    assert max_scaled_error(after[variance], biased[variance], tol) > 1.0, "the two conventions must differ here"


def test_an_average_that_leaves_out_asymmetric_padding_is_refused_by_torch(backend: Backend) -> None:
    """torch's pools pad symmetrically; Keras on torch pads an asymmetric 'same' average with repeated
    edge pixels that count in the mean (finding 20): both refuse it, naming the padding."""
    spec = CNNSpec(
        "avg_asym", (8, 8, 1), (Pool2D("avg", 3, 2, "same", count_padding=False), Flatten(), Dense(10)), "softmax"
    )
    params = init_params(spec, 0)
    if engine_of(backend.name) == "torch":
        with pytest.raises(UnsupportedOption, match=r"pool\.padding.*\(\(0, 1\), \(0, 1\)\)"):
            backend.build(spec, params)
        return
    x, _ = batch_for(spec)
    model = backend.build(spec, params)
    assert max_scaled_error(backend.logits(model, x), ref.logits(spec, params, x), tolerance("forward")) <= 1.0


def test_flatten_order_is_canonical_on_every_backend(backend: Backend) -> None:
    """One non-zero weight in the Dense kernel after the flatten, at the row of pixel (h, w, c):
    the logit must equal that pixel of the last feature map on every backend."""
    spec = CNNSpec("flat", (4, 4, 2), (Flatten(), Dense(1, use_bias=False)), "linear")
    kernel = np.zeros((32, 1), np.float32)
    h, w, c = 1, 2, 1
    kernel[(h * 4 + w) * 2 + c] = 1.0
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 2)).astype(np.float32)
    model = backend.build(spec, {"dense_0/kernel": kernel})
    np.testing.assert_array_equal(backend.logits(model, x)[:, 0], x[:, h, w, c])


# --- transfer learning ----------------------------------------------------------------------------

BACKBONE = ("stem", "stage_0", "stage_1")  # every layer of the tiny ResNets but the head


@pytest.mark.parametrize("frozen_batchnorm", ["inference", "training"])
def test_frozen_backbone_stays_bit_identical_and_batchnorm_follows_the_spec(
    backend: Backend, frozen_batchnorm: str
) -> None:
    spec = dataclasses.replace(SMALL["tiny_resnet_imagenet"], frozen=BACKBONE, frozen_batchnorm=frozen_batchnorm)
    params = perturbed_params(spec, 7)
    model = backend.build(spec, params)
    head = ["head/kernel", "head/bias"]
    assert trainable_names(spec) == head
    assert backend.count_params(model) == count_params(spec)
    assert count_params(spec).trainable == params["head/kernel"].size + params["head/bias"].size

    x, labels = batch_for(spec)
    # in training mode, a frozen BatchNorm normalises as the spec says (running or batch statistics)
    expected, state = ref.logits_and_state(spec, params, x, training=True)
    tol = tolerance("forward", "float32", backend.device())
    assert max_scaled_error(backend.logits(model, x, training=True), expected, tol) <= 1.0
    backend.load_params(model, params)

    _, grads = backend.loss_and_grads(model, x, labels, LOSS)
    assert list(grads) == head
    checks = ref.check_gradients(spec, params, x, labels, LOSS, grads, seed=8)
    assert max(c.relative_error for c in checks) <= tolerance("gradient", "float32", backend.device()).rtol
    backend.load_params(model, params)

    optimizer = backend.make_optimizer(
        model, OptimizerSpec("adam", 1e-2, beta1=0.9, beta2=0.999, epsilon=1e-8, epsilon_placement="corrected")
    )
    for _ in range(3):
        backend.train_step(model, optimizer, x, labels, LOSS)
    after = backend.export_params(model)
    for name in params:
        if name in head:
            assert not np.array_equal(after[name], params[name]), f"{name} did not train"
        elif name in state and frozen_batchnorm == "training":
            assert not np.array_equal(after[name], params[name]), f"{name}: running statistic not updated"
        else:  # frozen weights, and frozen running statistics in inference mode, to the bit
            np.testing.assert_array_equal(after[name], params[name], err_msg=name)


def test_frozen_backbone_trains_alike_on_every_backend(backends: tuple[Backend, Backend]) -> None:
    spec = dataclasses.replace(SMALL["tiny_bottleneck"], name="fine_tuned", frozen=BACKBONE)
    params = perturbed_params(spec, 9)
    x, labels = batch_for(spec)
    results = []
    for backend in backends:
        model = backend.build(spec, params)
        optimizer = backend.make_optimizer(model, OptimizerSpec("sgd", 0.1, momentum=0.9))
        losses = [backend.train_step(model, optimizer, x, labels, LOSS) for _ in range(5)]
        results.append((losses, backend.export_params(model)))
    tol = tolerance("trajectory", "float32", backends[0].device())
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=tol.rtol)
    for name in ("head/kernel", "head/bias"):
        assert max_scaled_error(results[0][1][name], results[1][1][name], tol) <= 1.0, name


def test_freezing_an_unknown_layer_names_it() -> None:
    with pytest.raises(SpecError, match="frozen: got 'stage_7'"):  # checked with the layout it names
        param_specs(dataclasses.replace(SMALL["tiny_bottleneck"], frozen=("stage_7",)))
    with pytest.raises(SpecError, match="frozen_batchnorm"):
        dataclasses.replace(SMALL["tiny_bottleneck"], frozen=("stem",), frozen_batchnorm="eval")


# --- torch's memory format ------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [ZOO["digits_cnn"], ZOO["cifar_simple_cnn"]], ids=["1_channel", "3_channels"])
def test_torch_models_receive_nchw_contiguous_images(request: pytest.FixtureRequest, spec: CNNSpec) -> None:
    """Whatever the channel count, what reaches a torch model, and each of its convolutions, is laid
    out as NCHW (row-major strides): with one channel, the permuted NHWC batch also counts as
    contiguous, and left so it made torch run its channels_last kernels (see the subprocess test below)."""
    backend = framework_backend(request, "torch")
    import torch

    model = backend.build(spec, init_params(spec, 0))
    seen: list[tuple[str, bool]] = []

    def record(name: str):
        return lambda _, args: seen.append((name, args[0].stride() == torch.empty(args[0].shape).stride()))

    model.register_forward_pre_hook(record("model"))
    convolutions = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    for index, conv in enumerate(convolutions):
        conv.register_forward_pre_hook(record(f"conv {index}"))
    x, y = batch_for(spec, 4)
    backend.forward(model, x)
    backend.logits(model, x, training=True)
    backend.loss_and_grads(model, x, y, LOSS)
    backend.train_step(model, backend.make_optimizer(model, OptimizerSpec("sgd", 0.1)), x, y, LOSS)
    names = ["model", *(f"conv {i}" for i in range(len(convolutions)))]
    assert convolutions and seen == [(name, True) for name in names] * 4, seen


def test_torch_compiled_train_step_trains_every_convolution(request: pytest.FixtureRequest) -> None:
    """With Inductor's CPU layout optimization, torch 2.13's compiled backward of digits_cnn gave
    both convolutions zero gradients (docs/findings.md, finding 7): one compiled step must move
    every tensor as the eager step does."""
    backend = framework_backend(request, "torch")
    spec = ZOO["digits_cnn"]
    params = perturbed_params(spec, 10)
    x, y = batch_for(spec)
    after = []
    for compiled in (False, True):
        model = backend.build(spec, params)
        backend.train_step(
            model, backend.make_optimizer(model, OptimizerSpec("sgd", 0.1)), x, y, LOSS, compiled=compiled
        )
        after.append(backend.export_params(model))
    tol = tolerance("trajectory", "float32", backend.device())
    for name in trainable_names(spec):
        assert not np.array_equal(after[1][name], params[name]), f"{name} did not move in the compiled step"
        assert max_scaled_error(after[1][name], after[0][name], tol) <= 1.0, name


# One intra-op thread, and oneDNN's AVX2 kernels (those torch picks on a CPU without AVX-512):
# the conditions under which 1×1 stride-2 channels_last weight gradients corrupted the heap.
_BACKWARD_LOOP = """
from spec.backend import load_backend
from spec.layers import BatchNorm
from spec.models import ResNetSpec
from spec.params import init_params
from spec.cases import Case
spec = ResNetSpec("tiny_resnet_cifar", (8, 8, 1), 10, "cifar", (1, 1), (4, 6), batchnorm=BatchNorm(0.8, 1e-3))
backend = load_backend("torch")
model = backend.build(spec, init_params(spec, 0))
x, y = Case(spec).batch()
for _ in range(200):
    backend.loss_and_grads(model, x, y, "sparse_categorical_crossentropy")
print("clean")
"""


def test_torch_resnet_backward_passes_on_one_channel_exit_cleanly(request: pytest.FixtureRequest) -> None:
    """In a subprocess, since a corrupted heap kills the process that has it: 200 backward passes of a
    ResNet with 1-channel input and a 1×1 stride-2 shortcut under one intra-op thread (docs/findings.md,
    "oneDNN's AVX2 1×1 convolution")."""
    import subprocess
    import sys

    framework_backend(request, "torch")
    env = {**os.environ, "TRIPTYCH_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run([sys.executable, "-c", _BACKWARD_LOOP], env=env, capture_output=True, text=True, timeout=300)
    assert (run.returncode, run.stdout.strip()) == (0, "clean"), run.stderr[-2000:]


# One small compiled forward pass, after the backend has configured torch.compile.
_COMPILED_PASS = """
import torch
from spec.backend import load_backend
load_backend("torch")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 64))
x = torch.randn(16, 64)
print((torch.compile(model)(x) - model(x)).abs().max().item())
"""


@pytest.mark.exhaustive  # two processes that each import torch and compile: ~45 s
def test_torch_compiled_kernels_are_cached_per_cpu_capability(request: pytest.FixtureRequest, tmp_path) -> None:
    """Inductor's on-disk cache ignores ``ATEN_CPU_CAPABILITY`` (docs/findings.md, finding 13): filled
    under one capability it corrupted the heap of a process under the other, or gave it wrong
    values. The backend gives each capability its own directory: both runs, sharing a temporary
    directory as their default, compile their own kernels and agree with eager."""
    import subprocess
    import sys

    framework_backend(request, "torch")
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "ATEN_CPU_CAPABILITY")}
    env["TMPDIR"] = str(tmp_path)  # the default cache directory lies under it
    for capability in ({"ATEN_CPU_CAPABILITY": "avx2"}, {}):
        run = subprocess.run(
            [sys.executable, "-c", _COMPILED_PASS], env={**env, **capability}, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        assert float(run.stdout.strip().splitlines()[-1]) < 1e-6, (capability, run.stdout)
