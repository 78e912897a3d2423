"""Which algorithm torch runs for each convolution of a model, and each path's float32 error.

torch picks a CPU convolution backend per call from the shapes, the dtype and its flags
(``torch.backends.mkldnn``, NNPACK, the im2col fallback ``Slow2d``); ``torch._C._select_conv_backend``
tells which. :func:`conv_paths` records, for a built model and a batch, what every convolution of a
forward pass receives and which backend it gets with oneDNN on and off; :func:`path_errors` measures
one convolution in isolation — no ReLU downstream, so no kink can hide or fake an error — in float32
against the same convolution in float64, forward and backward. ``python -m impls.torch.conv_paths``
prints the table of docs/precision.md for the zoo's convolutional models.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass

import torch
from torch import nn

from impls.torch.backend import BACKEND, TorchBackend, onednn
from impls.torch.models import SpecModel
from spec.cases import ZOO_CASES
from spec.errors import UnsupportedOption

Conv = nn.Conv2d | nn.ConvTranspose2d


@dataclass(frozen=True)
class ConvCall:
    """One convolution of a forward pass: the module's path in the model, what it received, and the
    backend torch selects for it with oneDNN on (its default on x86) and off."""

    layer: str
    module: Conv
    input: torch.Tensor
    backend: str
    backend_without_onednn: str

    def describe(self) -> str:
        m = self.module
        kind = "transposed " if isinstance(m, nn.ConvTranspose2d) else ""
        return (
            f"{kind}{m.kernel_size[0]}×{m.kernel_size[1]}/{m.stride[0]} {m.in_channels}→{m.out_channels} "
            f"on {tuple(self.input.shape)}"
        )


# torch 2.13's Python binding of at::native::ConvBackend leaves MkldnnTranspose (9, in the order of
# aten/src/ATen/native/ConvUtils.h) unnamed — its name reads "???" — and spells MpsTranspose
# "MpsTranspose," (docs/findings.md, finding 11).
UNNAMED_BACKENDS = {9: "MkldnnTranspose"}


def selected_backend(module: Conv, x: torch.Tensor) -> str:
    """The name of the convolution backend torch runs for ``module`` on ``x`` under the current flags."""
    transposed = isinstance(module, nn.ConvTranspose2d)
    padding = module.padding
    if isinstance(padding, str):  # 'valid' or 'same': the backend's choice does not depend on the pads
        padding = (0, 0)
    output_padding = list(module.output_padding) if transposed else [0, 0]
    choice = torch._C._select_conv_backend(
        x, module.weight, module.bias, list(module.stride), list(padding), list(module.dilation), transposed,
        output_padding, module.groups,
    )  # fmt: skip
    return UNNAMED_BACKENDS.get(choice.value, choice.name.rstrip(","))


def conv_paths(model: SpecModel, x: torch.Tensor) -> list[ConvCall]:
    """Every convolution a forward pass of ``model`` (in its current mode) runs on the NCHW batch
    ``x``, in order, with the backend torch selects for it."""
    received: list[tuple[str, Conv, torch.Tensor]] = []
    handles = [
        module.register_forward_pre_hook(lambda m, args, name=name: received.append((name, m, args[0].detach())))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    calls = []
    for name, module, seen in received:
        with onednn(False):
            without = selected_backend(module, seen)
        calls.append(ConvCall(name, module, seen, selected_backend(module, seen), without))
    return calls


@dataclass(frozen=True)
class PathErrors:
    """A convolution's float32 result against float64, each max |Δ| over the float64 result's
    largest element: its output, and for a random output gradient its weight and input gradients."""

    forward: float
    weight_gradient: float
    input_gradient: float

    @property
    def worst(self) -> float:
        return max(self.forward, self.weight_gradient, self.input_gradient)

    @property
    def worst_of(self) -> str:
        """Which of the three is the worst."""
        named = {
            "forward": self.forward,
            "weight gradient": self.weight_gradient,
            "input gradient": self.input_gradient,
        }
        return max(named, key=named.__getitem__)


def path_errors(call: ConvCall, *, use_onednn: bool = True, seed: int = 0) -> PathErrors:
    """The float32 error of ``call``'s convolution on its recorded input, on the path torch takes with
    oneDNN on or off, against the same convolution in float64."""
    generator = torch.Generator().manual_seed(seed)
    module32 = copy.deepcopy(call.module).requires_grad_(True)  # a frozen layer's weight gradient too
    module64 = copy.deepcopy(module32).double()
    x32 = call.input.clone().requires_grad_(True)
    x64 = call.input.double().requires_grad_(True)
    with onednn(use_onednn):
        out32 = module32(x32)
        upstream = torch.randn(out32.shape, generator=generator)
        grads32 = torch.autograd.grad(out32, (module32.weight, x32), upstream)
    out64 = module64(x64)
    grads64 = torch.autograd.grad(out64, (module64.weight, x64), upstream.double())

    def error(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.detach().double() - b.detach()).abs().max() / b.detach().abs().max())

    return PathErrors(error(out32, out64), error(grads32[0], grads64[0]), error(grads32[1], grads64[1]))


def model_paths(name: str, batch_size: int) -> list[ConvCall]:
    """The convolutions of the zoo model ``name`` built from its case's parameters, on a batch of its
    case's data of ``batch_size``, in evaluation mode (a GAN's: its generator's, which ``model(z)`` runs)."""
    backend = BACKEND
    assert isinstance(backend, TorchBackend)
    case = ZOO_CASES[name]
    model = backend.build(case.spec, case.params(0))
    x, _ = case.batch(0, size=batch_size)
    model.train(False)
    return conv_paths(model, backend._input(model, x))


def markdown(names: list[str], batch_sizes: dict[str, list[int]]) -> str:
    """The table of docs/precision.md: per zoo model and batch size, the backend torch selects for its
    convolutions with oneDNN on and off, and the worst float32 error of each path."""
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN "
        f"{'available' if torch.backends.mkldnn.is_available() else 'unavailable'}, NNPACK "
        f"{'available' if torch.backends.nnpack.is_available() else 'unavailable'}",
        "",
        "| model | batch | convolutions | backend (oneDNN on) | worst float32 error | backend (oneDNN off) "
        "| worst float32 error |",
        "|---|---:|---:|---|---:|---|---:|",
    ]
    for name in names:
        for size in batch_sizes[name]:
            calls = model_paths(name, size)
            on = sorted({c.backend for c in calls})
            off = sorted({c.backend_without_onednn for c in calls})
            worst_on = max((path_errors(c, use_onednn=True) for c in calls), key=lambda e: e.worst)
            worst_off = max((path_errors(c, use_onednn=False) for c in calls), key=lambda e: e.worst)
            lines.append(
                f"| {name} | {size} | {len(calls)} | {', '.join(on)} | {worst_on.worst:.1e} ({worst_on.worst_of}) "
                f"| {', '.join(off)} | {worst_off.worst:.1e} ({worst_off.worst_of}) |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impls.torch.conv_paths", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a zoo model (default: every one with convolutions)")
    args = parser.parse_args(argv)
    names = args.model or [name for name in ZOO_CASES if runs_convolutions(name)]
    print(markdown(names, {name: batch_sizes(name) for name in names}))
    return 0


def runs_convolutions(name: str) -> bool:
    """Whether the torch build of the zoo model ``name`` runs a convolution in its forward pass."""
    try:
        return bool(model_paths(name, 1))
    except UnsupportedOption:  # a model torch's own layers cannot express has no torch convolutions
        return False


def batch_sizes(name: str) -> list[int]:
    """The batch sizes the suite runs the zoo model ``name`` at: its contract case's, the float64
    witnesses' (4) and the benchmarks' (128, or 32 for a deep network)."""
    case = ZOO_CASES[name]
    return sorted({case.batch_size, 4, 32 if case.spec.is_deep else 128})


if __name__ == "__main__":
    raise SystemExit(main())
