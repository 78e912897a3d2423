"""Which convolution algorithm torch runs in the suite, and that each one is float32-exact
(:mod:`impls.torch.conv_paths`; the table in docs/precision.md). Each zoo convolution's backend is
checked at every batch size the suite runs it at, and the convolution measured alone, at the
smallest and the largest, against the same convolution in float64 — forward, and the weight and
input gradients — on the path torch takes with oneDNN and on the one it takes without."""

from __future__ import annotations

import pytest

from conftest import framework_backend
from spec.cases import ZOO_CASES
from spec.layers import ConvTranspose2D
from spec.tolerances import tolerance

QUICK = ("digits_cnn", "resnet18_narrow", "digits_conv_autoencoder")
# what torch 2.13 selects on an x86 CPU (measured, docs/precision.md): oneDNN for every convolution
# but where oneDNN_declines; without oneDNN, im2col (Slow2d, SlowTranspose2d) for small batches and
# NNPACK from batch 16
WITH_ONEDNN = {"Mkldnn", "MkldnnTranspose"}
WITHOUT_ONEDNN = {"Slow2d", "SlowTranspose2d", "NnpackSpatial"}


def onednn_declines(call: object) -> bool:
    """torch's exceptions at the suite's batch sizes, where it runs im2col (Slow2d), faster there:
    a 1×1, stride-1 convolution of fewer than 16 images on one thread — as in a pytest-xdist worker,
    which gets one thread of two cores (measured: 4 and 15 images ran Slow2d; 16 images, or two
    threads, oneDNN); and one image of at most 20,480 input values under a kernel with a side of at most 3
    (measured: 1×5×64×64 and 1×20×32×32 ran Slow2d; 1×5×65×65, 1×21×32×32, a 4×4 kernel or two
    images, oneDNN; transposed convolutions not measured)."""
    import torch

    module, x = call.module, call.input  # type: ignore[attr-defined]
    pointwise = module.kernel_size == (1, 1) and module.stride == (1, 1)
    if pointwise and len(x) < 16 and torch.get_num_threads() == 1:
        return True
    small = len(x) == 1 and x.numel() <= 20_480 and min(module.kernel_size) <= 3 and module.groups == 1
    return small and isinstance(module, torch.nn.Conv2d)  # measured on plain convolutions


# the zoo models with images in or transposed convolutions out (a DCGAN's generator)
CONVOLUTIONAL = [
    name for name, case in ZOO_CASES.items() if len(case.spec.input_shape) == 3 or case.spec.parts(ConvTranspose2D)
]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n in QUICK else [pytest.mark.exhaustive]) for n in CONVOLUTIONAL]
)
def test_every_torch_convolution_path_is_float32_exact(request: pytest.FixtureRequest, name: str) -> None:
    backend = framework_backend(request, "torch")
    import torch

    from impls.torch import conv_paths

    if backend.device() != "cpu" or not torch.backends.mkldnn.is_available():
        pytest.skip("the CPU paths are measured: this torch runs on a GPU, or has no oneDNN")
    if not conv_paths.runs_convolutions(name):
        pytest.skip(f"torch's build of {name} runs no convolution in its forward pass")
    tol = tolerance("gradient_vs_witness", "float32", backend.device())
    sizes = conv_paths.batch_sizes(name)
    for size in sizes:
        measured = size in (sizes[0], sizes[-1])  # im2col's batches and NNPACK's, the longest sums
        for call in conv_paths.model_paths(name, size):
            expected = {"Slow2d"} if onednn_declines(call) else WITH_ONEDNN
            assert call.backend in expected, (size, call.layer, call.backend)
            assert call.backend_without_onednn in WITHOUT_ONEDNN, (size, call.layer, call.backend_without_onednn)
            for use_onednn in (True, False) if measured else ():
                errors = conv_paths.path_errors(call, use_onednn=use_onednn)
                assert errors.worst <= tol.rtol, (size, call.describe(), use_onednn, errors)


def test_the_onednn_switch_changes_nothing_else(request: pytest.FixtureRequest) -> None:
    """``conv_paths.onednn`` toggles oneDNN alone: ``torch.backends.mkldnn.flags`` would also reset its
    TF32 setting, which the exact-float32 configuration keeps."""
    framework_backend(request, "torch")
    import torch

    from impls.torch import conv_paths

    before = (torch.backends.mkldnn.enabled, torch._C._get_onednn_allow_tf32())
    with conv_paths.onednn(False):
        assert not torch.backends.mkldnn.enabled
        assert torch._C._get_onednn_allow_tf32() == before[1]
    assert (torch.backends.mkldnn.enabled, torch._C._get_onednn_allow_tf32()) == before
