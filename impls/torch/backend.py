"""The :class:`spec.backend.Backend` contract for PyTorch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from impls.torch import schedules, weights
from impls.torch.losses import OWN_LOSSES, compute_loss
from impls.torch.models import MODEL_CLASSES, VAE, SpecModel, logits_of, recording_outputs
from impls.torch.optimizers import make_optimizer
from spec import engines
from spec.backend import Backend, NativeBackend, cached
from spec.errors import SpecError
from spec.inputs import check_inputs
from spec.layer_paths import NativePath
from spec.losses import takes_class_ids
from spec.models import (
    ModelSpec,
)
from spec.optimizers import OptimizerSpec
from spec.params import (
    MIXED_PRECISIONS,
    ParamCount,
    Precision,
    compute_dtype,
    group_names,
    trained_names,
    variable_dtype,
)
from spec.precision import LOSS_SCALE
from spec.schedules import ScheduleSpec


def training_loss(model: SpecModel, x: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """The spec's loss on one batch plus its L2 term."""
    if loss in OWN_LOSSES:  # a kind's own (a VAE's, a GAN's): from more than the logits
        return OWN_LOSSES[loss](model, x, targets, loss)
    value = compute_loss(loss, model(x), targets, model.spec.output_activation)
    return value + model.l2_penalty() if model.spec.kernel_l2 else value


# Every compile specialises to its model's shapes, as in a process that compiles one model. Dynamo
# caches by code object (``training_loss``, ``optimizer.step``, ``Module.forward`` are shared by all
# models here), and by default the second model's shapes made it mark the changed sizes dynamic
# ("automatic dynamic"): later models then compiled with symbolic sequence lengths and
# optimizer-state sizes, slower to compile and to run.
STATIC_SHAPES = False


def _compiled_loss(model: SpecModel) -> Callable[..., torch.Tensor]:
    """``training_loss`` through ``torch.compile`` (forward and, via AOTAutograd, backward), compiled
    once per model. Eager is torch's default: compiling takes 10–15 s on a small CPU, more than most
    of our training runs."""
    return cached(model, "compiled_loss", lambda: torch.compile(training_loss, dynamic=STATIC_SHAPES))


def _compiled_optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """``optimizer.step`` through ``torch.compile`` when the optimizer has no step hooks. With hooks
    (ε-hat, schedules, clipping) it stays eager: they change Python floats in ``param_groups`` every
    step, and each new value would recompile a compiled step."""
    hooked = optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
    return cached(
        optimizer,
        "compiled_step",
        lambda: optimizer.step if hooked else torch.compile(optimizer.step, dynamic=STATIC_SHAPES),
    )


def _compiled_module(model: SpecModel) -> Callable[[torch.Tensor], Any]:
    """``torch.compile(model)``, compiled once per model (and recompiled by torch for a new mode)."""
    return cached(model, "compiled_module", lambda: torch.compile(model, dynamic=STATIC_SHAPES))


_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _to_nchw(tensor: torch.Tensor) -> torch.Tensor:
    """Canonical NHWC images (inputs, or image targets) as the NCHW tensors torch layers use, always
    in ``contiguous_format``. ``.contiguous()`` is not enough: with one channel the permuted view
    already counts as contiguous, keeps its NHWC strides, and torch then runs its channels_last
    kernels, one of which corrupts the heap (docs/findings.md, "oneDNN's AVX2 1×1 convolution")."""
    if tensor.ndim != 4:
        return tensor
    return tensor.permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)


def _to_numpy(tensor: torch.Tensor, model: SpecModel) -> np.ndarray:
    """A model's outputs as canonical numpy arrays in the dtype of its variables: NCHW images back
    to NHWC, and a mixed-precision model's bfloat16 or float16 outputs as float32 (numpy has no
    bfloat16)."""
    tensor = tensor.to(_DTYPES[variable_dtype(model.precision)])
    return (tensor.permute(0, 2, 3, 1) if tensor.ndim == 4 else tensor).cpu().numpy()


@contextlib.contextmanager
def onednn(enabled: bool) -> Iterator[None]:
    """oneDNN on or off, and nothing else changed (``torch.backends.mkldnn.flags`` would also reset
    its TF32 and fp32-precision settings to their defaults, with a warning on every call)."""
    previous = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(enabled)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(previous)


def _scaler(optimizer: torch.optim.Optimizer) -> torch.amp.GradScaler:
    """The ``GradScaler`` a ``mixed_float16`` model's train steps with ``optimizer`` use, made once
    per optimizer with the spec's loss scaling (its own defaults differ: :class:`spec.precision.LossScale`)."""
    return cached(
        optimizer,
        "grad_scaler",
        lambda: torch.amp.GradScaler(
            _device_of(optimizer).type,
            init_scale=LOSS_SCALE.initial,
            growth_factor=LOSS_SCALE.factor,
            backoff_factor=1 / LOSS_SCALE.factor,
            growth_interval=LOSS_SCALE.growth_interval,
        ),
    )


def _device_of(optimizer: torch.optim.Optimizer) -> torch.device:
    return optimizer.param_groups[0]["params"][0].device


class TorchBackend(NativeBackend[SpecModel]):
    name = "torch"
    trains_compiled = False
    model_classes = MODEL_CLASSES
    layer_constructor = (torch.nn.Module, "__init__", 0)

    def __init__(self) -> None:
        self._threads = engines.configure("torch")
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def framework_version(self) -> str:
        return f"torch {torch.__version__}"

    def threads(self) -> str:
        return self._threads

    def device(self) -> str:
        return str(self._device) if self._device.type == "cpu" else f"cuda:{torch.cuda.current_device()}"

    def _new_model(
        self, model_class: Callable[..., SpecModel], spec: ModelSpec, seed: int, precision: Precision
    ) -> SpecModel:
        torch.manual_seed(seed)  # nn.Dropout draws its masks from torch's global generator
        return model_class(spec).to(self._device, dtype=_DTYPES[variable_dtype(precision)])

    def _load(self, model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
        weights.load(model, params)

    def _freeze(self, model: SpecModel) -> None:
        weights.freeze(model)

    def load_params(self, model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
        weights.load(model, params)

    native_suffix = ".pt"

    def save_native(self, model: SpecModel, path: str | Path) -> Path:
        return weights.save_state_file(model, f"{path}{self.native_suffix}")

    def load_native(self, model: SpecModel, path: str | Path) -> None:
        weights.load_state_file(model, path)

    def export_params(self, model: SpecModel) -> dict[str, np.ndarray]:
        return weights.export(model)

    def count_params(self, model: SpecModel) -> ParamCount:
        held = {id(p) for p in model.held_at_zero}  # constants torch's layer insists on (SpecModel)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad and id(p) not in held)
        # BatchNorm's running statistics count, as in Keras; its integer step counter holds no weights,
        # and buffers left out of the state dict are constants (the sinusoidal position table)
        saved = model.state_dict(keep_vars=True).values()
        state = sum(t.numel() for t in saved if not isinstance(t, torch.nn.Parameter) and t.is_floating_point())
        return ParamCount(trainable=trainable, non_trainable=frozen + state)

    def _autocast(self, model: SpecModel) -> contextlib.AbstractContextManager[object]:
        """torch's mixed precision for a ``mixed_*`` model's forward pass and loss (torch's own rule:
        backward runs outside, in the dtypes the forward chose): ``torch.autocast`` runs each op in
        bfloat16 or float16, or in float32, by its own op lists (docs/precision.md)."""
        if model.precision not in MIXED_PRECISIONS:
            return contextlib.nullcontext()
        autocast = torch.autocast(self._device.type, dtype=_DTYPES[compute_dtype(model.precision)])
        if self._device.type == "cpu" and any(isinstance(m, torch.nn.LSTM) for m in model.modules()):
            # autocast sends nn.LSTM to oneDNN's bfloat16/float16 LSTM, which CPUs without native
            # support for the format refuse (docs/findings.md, finding 14); without oneDNN it runs
            # torch's own LSTM, in float32, on every CPU alike
            stack = contextlib.ExitStack()
            stack.enter_context(onednn(False))
            stack.enter_context(autocast)
            return stack
        return autocast

    def _tensor(self, x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``x`` (numpy, or already a tensor: no copy then) as a tensor of ``dtype`` on the device."""
        return torch.as_tensor(x, dtype=dtype, device=self._device)

    def _input(self, model: SpecModel, x: np.ndarray) -> torch.Tensor:
        """A batch for ``model``: canonical NHWC images become the NCHW tensors torch layers expect, in
        the model's precision; token ids become int64, the index type of ``nn.Embedding``."""
        check_inputs(model.spec, x)
        if model.spec.input_dtype == "int32":
            return self._tensor(x, torch.int64)
        return _to_nchw(self._tensor(x, _DTYPES[variable_dtype(model.precision)]))

    def logits(self, model: SpecModel, x: np.ndarray, *, training: bool = False, compiled: bool = False) -> np.ndarray:
        model.train(training)
        run = _compiled_module(model) if compiled else model
        with torch.no_grad(), self._autocast(model):
            return _to_numpy(logits_of(run(self._input(model, x))), model)

    def forward(self, model: SpecModel, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        model.train(training)
        with torch.no_grad(), self._autocast(model):
            return _to_numpy(model.infer(self._input(model, x)), model)

    def layer_outputs(
        self, model: SpecModel, x: np.ndarray, paths: Mapping[str, NativePath], *, training: bool = False
    ) -> dict[str, np.ndarray]:
        layers = {name: model.get_submodule(".".join(map(str, path))) for name, path in paths.items()}
        with recording_outputs(layers) as found:
            self.logits(model, x, training=training)
        return found

    def encode(self, model: SpecModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(model, VAE):
            raise SpecError("model", model.spec.name, "a VAE: encode reads q(z|x) from its encoder")
        check_inputs(model.spec, images, what="images", shape=(model.spec.input_size,))
        model.train(False)
        with torch.no_grad(), self._autocast(model):
            mean, log_variance = model.encode(self._tensor(images, _DTYPES[variable_dtype(model.precision)]))
        return _to_numpy(mean, model), _to_numpy(log_variance, model)

    def _loss_and_grads(
        self, model: SpecModel, x: np.ndarray, targets: np.ndarray, loss: str, scale: float
    ) -> tuple[float, dict[str, np.ndarray]]:
        value = self._backward(model, x, targets, loss, scale=lambda value: value * scale)
        names = trained_names(model.spec, loss)
        if scale != 1.0:
            for parameter in weights.trained_parameters(model, names):
                if parameter.grad is not None:
                    parameter.grad.div_(scale)
        return float(value.item()), weights.export_grads(model, names)

    def _backward(
        self,
        model: SpecModel,
        x: np.ndarray,
        targets: np.ndarray,
        loss: str,
        compiled: bool = False,
        scale: Callable[[torch.Tensor], torch.Tensor] = lambda value: value,
    ) -> torch.Tensor:
        """Forward in training mode, loss and ``backward()`` of the ``scale``d loss (float16 loss
        scaling): gradients land in each ``.grad``. Returns the loss, unscaled."""
        inputs = self._input(model, x)
        model.train(True)
        model.zero_grad(set_to_none=True)
        # torch's cross_entropy wants int64 class ids
        dtype = torch.int64 if takes_class_ids(loss) else _DTYPES[variable_dtype(model.precision)]
        target_tensor = _to_nchw(self._tensor(targets, dtype))
        loss_fn = _compiled_loss(model) if compiled else training_loss
        with self._autocast(model):
            value = loss_fn(model, inputs, target_tensor, loss)
        scale(value).backward()
        return value

    def _native_optimizer(
        self, model: SpecModel, opt: OptimizerSpec, part: str | None, ported: bool
    ) -> torch.optim.Optimizer:
        return make_optimizer(model, opt, group_names(model.spec, part), ported=ported)

    def apply_gradients(
        self,
        model: SpecModel,
        optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer],
        grads: Mapping[str, np.ndarray],
    ) -> None:
        part, native = self.optimizer_for_grads(model, optimizer, grads)
        weights.set_grads(model, grads, group_names(model.spec, part))
        native.step()

    def _train_step(
        self,
        model: SpecModel,
        optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer],
        x: np.ndarray,
        targets: np.ndarray,
        loss: str,
        compiled: bool,
    ) -> float:
        native = self.optimizer_for_loss(optimizer, loss)
        step = _compiled_optimizer_step(native) if compiled else native.step
        if model.precision != "mixed_float16":
            value = self._backward(model, x, targets, loss, compiled=compiled)
            step()
            return float(value.item())
        scaler = _scaler(native)  # torch's float16 recipe: scale, backward, unscale and step unless inf, update
        value = self._backward(model, x, targets, loss, compiled=compiled, scale=scaler.scale)
        scaler.step(native)
        scaler.update()
        return float(value.item())

    def learning_rates(self, schedule: ScheduleSpec) -> list[float]:
        return schedules.learning_rates(schedule)


BACKEND: Backend[SpecModel] = TorchBackend()
