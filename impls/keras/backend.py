"""The :class:`spec.backend.Backend` contract for Keras 3, on whichever backend Keras runs
(:mod:`impls.keras.engine`): executor ``keras`` on TensorFlow, ``keras-jax``, ``keras-torch``."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import keras
import numpy as np

from impls.keras import schedules, weights
from impls.keras.engine import ENGINE, cached_step, running, unscaled
from impls.keras.losses import OWN_LOSSES, compute_loss
from impls.keras.models import MODEL_CLASSES, VAE, SpecModel, logits_of, recording_outputs
from impls.keras.optimizers import before_step, make_optimizer
from spec.backend import Backend, NativeBackend, cached
from spec.errors import SpecError, UnsupportedOption
from spec.inputs import batch_dtype, check_inputs
from spec.layer_paths import NativePath, resolve
from spec.losses import takes_class_ids
from spec.models import ModelSpec
from spec.optimizers import OptimizerSpec
from spec.params import ParamCount, Precision, check_params, group_names, trained_names, variable_dtype
from spec.precision import LOSS_SCALE
from spec.schedules import ScheduleSpec


def _targets(model: SpecModel, targets: Any, loss: str) -> Any:
    return ENGINE.tensor(targets, ENGINE.class_ids if takes_class_ids(loss) else variable_dtype(model.precision))


def _inputs(model: SpecModel, x: Any) -> Any:
    """A batch (checked against the spec) in the dtype the model takes: values in its precision, or int32 token ids."""
    check_inputs(model.spec, x)
    return ENGINE.tensor(x, batch_dtype(model.spec, model.precision))


@contextlib.contextmanager
def _dtype_policy(precision: Precision) -> Iterator[None]:
    """Keras's global dtype policy set to ``precision`` while a model's layers are made: each layer
    takes the policy in force when it is constructed for its variables and its computation."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        with ENGINE.in_precision(precision):
            yield
    finally:
        keras.config.set_dtype_policy(previous)


def training_loss(model: SpecModel, loss: str) -> Callable[[Any, Any], Any]:
    """The training loss of ``model`` as a function of a batch, made once per model and loss: the
    named loss in training mode, plus the kernel regularizers' L2 terms as Keras's own train step
    adds them."""

    def value(x: Any, targets: Any) -> Any:
        if loss in OWN_LOSSES:  # a kind's own (a VAE's, a GAN's): from more than the logits
            total = OWN_LOSSES[loss](model, x, targets, loss)
        else:
            total = compute_loss(loss, model(x, training=True), targets, model.spec.output_activation)
        if model.losses:
            total = total + keras.ops.sum(model.losses)
        return total

    return cached(model, f"training_loss {loss}", lambda: value)


def _to_numpy(model: SpecModel, tensor: Any) -> np.ndarray:
    """A model's output as a numpy array in the dtype of its variables (a mixed-precision model's
    bfloat16 or float16 outputs as float32)."""
    return keras.ops.convert_to_numpy(keras.ops.cast(tensor, variable_dtype(model.precision)))


def _compiled_call(model: SpecModel) -> Callable[..., Any]:
    """The model's call compiled by the engine (traced once per ``training`` value)."""
    return cached(model, "compiled_call", lambda: ENGINE.compiled_call(model))


def _trained_variables(model: SpecModel, part: str | None) -> dict[str, keras.Variable]:
    """The trainable variables of ``part`` (a GAN's network), or of the whole model, by canonical name."""
    names = group_names(model.spec, part)
    return weights.canonical_variables(model, trainable_only=True, names=names)


P = ParamSpec("P")
R = TypeVar("R")


def _running(
    method: Callable[Concatenate[KerasBackend, SpecModel, P], R],
) -> Callable[Concatenate[KerasBackend, SpecModel, P], R]:
    """A backend method on a model, run in what the model's precision needs (:func:`engine.running`)."""

    @functools.wraps(method)
    def run(self: KerasBackend, model: SpecModel, *args: P.args, **kwargs: P.kwargs) -> R:
        with running(model):
            return method(self, model, *args, **kwargs)

    return run


class KerasBackend(NativeBackend[SpecModel]):
    name = ENGINE.executor
    trains_compiled = ENGINE.fit_compiles
    model_classes = MODEL_CLASSES
    layer_constructor = (keras.layers.Layer, "__init__", 0)

    def framework_version(self) -> str:
        return f"keras {keras.__version__} ({ENGINE.version()})"

    def threads(self) -> str:
        return ENGINE.threads

    def device(self) -> str:
        return ENGINE.device

    def release_compiled(self) -> None:
        ENGINE.release_compiled()

    def _new_model(
        self, model_class: Callable[..., SpecModel], spec: ModelSpec, seed: int, precision: Precision
    ) -> SpecModel:
        if precision == "float64" and ENGINE.float64_refused:
            raise UnsupportedOption(self.name, "precision", precision, ENGINE.float64_refused)
        model = model_class(spec, seed=seed)
        model.create_variables()
        return model

    def _precision_scope(self, precision: Precision) -> contextlib.AbstractContextManager[None]:
        return _dtype_policy(precision)

    def _load(self, model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
        weights.load(model, params)

    def _freeze(self, model: SpecModel) -> None:
        weights.freeze(model)

    @_running
    def load_params(self, model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
        weights.load(model, params)

    native_suffix = ".keras"  # the whole model: keras.saving.load_model rebuilds it from the spec in its config

    @_running
    def save_native(self, model: SpecModel, path: str | Path) -> Path:
        return weights.save_weights_file(model, f"{path}{self.native_suffix}")

    @_running
    def load_native(self, model: SpecModel, path: str | Path) -> None:
        weights.load_weights_file(model, path)

    @_running
    def export_params(self, model: SpecModel) -> dict[str, np.ndarray]:
        return weights.export(model)

    def count_params(self, model: SpecModel) -> ParamCount:
        def size(variables: list[keras.Variable]) -> int:
            return sum(int(np.prod(v.shape)) for v in variables)

        return ParamCount(size(model.trainable_weights), size(model.non_trainable_weights))

    @_running
    def logits(self, model: SpecModel, x: np.ndarray, *, training: bool = False, compiled: bool = False) -> np.ndarray:
        run = _compiled_call(model) if compiled else model
        with ENGINE.inference():
            return _to_numpy(model, logits_of(run(_inputs(model, x), training=training)))

    @_running
    def forward(self, model: SpecModel, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        with ENGINE.inference():
            return _to_numpy(model, model.infer(_inputs(model, x), training=training))

    @_running
    def layer_outputs(
        self, model: SpecModel, x: np.ndarray, paths: Mapping[str, NativePath], *, training: bool = False
    ) -> dict[str, np.ndarray]:
        with recording_outputs({name: resolve(model, path) for name, path in paths.items()}) as found:
            self.logits(model, x, training=training)
        return found

    @_running
    def encode(self, model: SpecModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(model, VAE):
            raise SpecError("model", model.spec.name, "a VAE: encode reads q(z|x) from its encoder")
        check_inputs(model.spec, images, what="images", shape=(model.spec.input_size,))
        with ENGINE.inference():
            mean, log_variance = model.encode(ENGINE.tensor(images, variable_dtype(model.precision)))
        return _to_numpy(model, mean), _to_numpy(model, log_variance)

    @_running
    def _loss_and_grads(
        self, model: SpecModel, x: np.ndarray, targets: np.ndarray, loss: str, scale: float
    ) -> tuple[float, dict[str, np.ndarray]]:
        variables = weights.canonical_variables(model, trainable_only=True, names=trained_names(model.spec, loss))
        value, grads = ENGINE.loss_and_grads(
            model,
            list(variables.values()),
            training_loss(model, loss),
            _inputs(model, x),
            _targets(model, targets, loss),
            scale,
        )
        true_grads = {
            name: keras.ops.convert_to_numpy(g) / scale if scale != 1.0 else keras.ops.convert_to_numpy(g)
            for name, g in zip(variables, grads, strict=True)
        }
        return float(keras.ops.convert_to_numpy(value)), weights.to_canonical(model, true_grads)

    def _native_optimizer(
        self, model: SpecModel, opt: OptimizerSpec, part: str | None, ported: bool
    ) -> keras.optimizers.Optimizer:
        optimizer = make_optimizer(opt, ported=ported)
        if model.precision == "mixed_float16":  # Keras's float16 recipe; it fixes the factor at 2
            if LOSS_SCALE.factor != 2.0:
                raise UnsupportedOption(
                    self.name, "LOSS_SCALE.factor", LOSS_SCALE.factor, "LossScaleOptimizer grows and backs off by 2"
                )
            optimizer = keras.optimizers.LossScaleOptimizer(
                optimizer, initial_scale=LOSS_SCALE.initial, dynamic_growth_steps=LOSS_SCALE.growth_interval
            )
        optimizer.spec = opt
        optimizer.build(list(_trained_variables(model, part).values()))
        return optimizer

    @_running
    def apply_gradients(
        self,
        model: SpecModel,
        optimizer: keras.optimizers.Optimizer | dict[str, keras.optimizers.Optimizer],
        grads: Mapping[str, np.ndarray],
    ) -> None:
        part, native = self.optimizer_for_grads(model, optimizer, grads)
        names = group_names(model.spec, part)
        checked = check_params(
            model.spec,
            grads,
            source="gradients",
            trainable_only=True,
            names=names,
            dtype=variable_dtype(model.precision),
        )
        checked = {name: ENGINE.tensor(g, str(g.dtype)) for name, g in weights.to_native(model, checked).items()}
        before_step(native, native.spec)
        variables = _trained_variables(model, part)
        with ENGINE.inference():
            unscaled(native).apply_gradients([(checked[name], variable) for name, variable in variables.items()])

    @_running
    def _train_step(
        self,
        model: SpecModel,
        optimizer: keras.optimizers.Optimizer | dict[str, keras.optimizers.Optimizer],
        x: np.ndarray,
        targets: np.ndarray,
        loss: str,
        compiled: bool,
    ) -> float:
        inputs = _inputs(model, x)
        native = self.optimizer_for_loss(optimizer, loss)
        before_step(native, native.spec)
        trained = weights.canonical_variables(model, trainable_only=True, names=trained_names(model.spec, loss))
        step = cached_step(model, native, list(trained.values()), loss, training_loss(model, loss), compiled)
        return float(keras.ops.convert_to_numpy(step(inputs, _targets(model, targets, loss))))

    def learning_rates(self, schedule: ScheduleSpec) -> list[float]:
        return schedules.learning_rates(schedule)


BACKEND: Backend[SpecModel] = KerasBackend()
