"""The :class:`spec.backend.Backend` contract for Keras 3 on TensorFlow."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from impls.keras import schedules, weights
from impls.keras.losses import OWN_LOSSES, compute_loss
from impls.keras.models import MODEL_CLASSES, VAE, SpecModel, logits_of, recording_outputs
from impls.keras.optimizers import before_step, make_optimizer
from spec.backend import Backend, NativeBackend, cached, intra_op_threads
from spec.errors import BackendUnavailable, SpecError, UnsupportedOption
from spec.inputs import batch_dtype, check_inputs
from spec.layer_paths import NativePath, resolve
from spec.losses import takes_class_ids
from spec.models import (
    ModelSpec,
)
from spec.optimizers import OptimizerSpec
from spec.params import ParamCount, Precision, check_params, group_names, trained_names, variable_dtype
from spec.precision import LOSS_SCALE
from spec.schedules import ScheduleSpec

if keras.backend.backend() != "tensorflow":
    raise BackendUnavailable(
        f"the keras backend needs Keras on TensorFlow, but this process runs Keras on "
        f"{keras.backend.backend()!r} (KERAS_BACKEND was set before triptych loaded it)"
    )


def configure_float32_exact() -> None:
    """Keep float32 matmuls and convolutions in full float32 on GPUs: TensorFlow enables TF32 by
    default, which would make equivalence checks measure the hardware instead of the model."""
    tf.config.experimental.enable_tensor_float_32_execution(False)


def _as(array: np.ndarray | tf.Tensor, dtype: str) -> tf.Tensor:
    """``array`` (numpy, or already a tensor: no copy then) as a tensor of ``dtype``."""
    if isinstance(array, tf.Tensor):
        return tf.cast(array, dtype)
    return tf.constant(np.asarray(array, dtype))


def _targets(model: SpecModel, targets: np.ndarray | tf.Tensor, loss: str) -> tf.Tensor:
    return _as(targets, "int64" if takes_class_ids(loss) else variable_dtype(model.precision))


def _inputs(model: SpecModel, x: np.ndarray | tf.Tensor) -> tf.Tensor:
    """A batch (checked against the spec) in the dtype the model takes: values in its precision, or int32 token ids."""
    check_inputs(model.spec, x)
    return _as(x, batch_dtype(model.spec, model.precision))


@contextlib.contextmanager
def _dtype_policy(precision: Precision) -> Iterator[None]:
    """Keras's global dtype policy set to ``precision`` while a model's layers are made: each layer
    takes the policy in force when it is constructed for its variables and its computation."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _taped_loss_and_grads(
    model: SpecModel,
    variables: list[keras.Variable],
    x: tf.Tensor,
    targets: tf.Tensor,
    loss: str,
    scale: Callable[[tf.Tensor], tf.Tensor] = lambda value: value,
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """The training loss and the gradient of the ``scale``d loss (float16 loss scaling) for each of
    ``variables`` (looked up by the caller, outside any tf.function: AutoGraph cannot convert the
    spec's ``match`` statements)."""
    with tf.GradientTape() as tape:
        if loss in OWN_LOSSES:  # a kind's own (a VAE's, a GAN's): from more than the logits
            value = OWN_LOSSES[loss](model, x, targets, loss)
        else:
            value = compute_loss(loss, model(x, training=True), targets, model.spec.output_activation)
        if model.losses:  # the kernel regularizers' L2 terms, as Keras's own train step adds them
            value = value + keras.ops.sum(model.losses)
        scaled = scale(value)
    # An Embedding's gradient comes as IndexedSlices, one slice per looked-up token, repeats kept.
    # Keras's Adam squares those slices one by one for its second moment (Σg² where the dense rule
    # has (Σg)²) — a different update whenever a token repeats in the batch. Made dense here, the
    # update is the one torch and Optax compute.
    return value, [tf.convert_to_tensor(g) for g in tape.gradient(scaled, variables)]


def _to_numpy(model: SpecModel, tensor: tf.Tensor) -> np.ndarray:
    """A model's output as a numpy array in the dtype of its variables (a mixed-precision model's
    bfloat16 or float16 outputs as float32)."""
    return keras.ops.convert_to_numpy(keras.ops.cast(tensor, variable_dtype(model.precision)))


def _unscaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that takes true gradients: a ``LossScaleOptimizer``'s inner one (it would
    divide them by its scale)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def _use_xla(model: SpecModel) -> bool:
    """Whether the compiled paths use XLA: not for a model with dropout on a CPU (see
    :func:`_train_step_function`)."""
    on_cpu = not tf.config.list_logical_devices("GPU")
    return not (model.spec.has_dropout and on_cpu)


def _train_step_function(
    model: SpecModel, optimizer: keras.optimizers.Optimizer, loss: str, compiled: bool
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The train step, built once per (model, optimizer, loss, mode). Compiled, it is one
    ``tf.function`` compiled by XLA — except for a model with dropout on a CPU, where XLA's
    random-number generation made each step about 20× slower than TensorFlow's own kernels (30 ms vs
    1.6 ms for the 64-512-10 digits net here), so it stays a graph-mode ``tf.function``. Eager, it is
    the same Python run op by op."""
    cache = cached(model, "train_steps", dict)
    key = (id(optimizer), loss, compiled)
    if key not in cache:
        trained = trained_names(model.spec, loss)
        variables = list(weights.canonical_variables(model, trainable_only=True, names=trained).values())

        # a LossScaleOptimizer (mixed_float16) scales the loss, and unscales and checks the gradients
        scale = getattr(optimizer, "scale_loss", lambda value: value)

        def step(x: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
            value, grads = _taped_loss_and_grads(model, variables, x, targets, loss, scale)
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            return value

        if compiled:
            step = tf.function(step, jit_compile=_use_xla(model), reduce_retracing=True)
        cache[key] = step
    return cache[key]


def _compiled_call(model: SpecModel) -> Callable[..., Any]:
    """The model's call as an XLA-compiled ``tf.function`` (traced once per ``training`` value)."""
    return cached(
        model,
        "compiled_call",
        lambda: tf.function(lambda x, training: model(x, training=training), jit_compile=_use_xla(model)),
    )


def _trained_variables(model: SpecModel, part: str | None) -> dict[str, keras.Variable]:
    """The trainable variables of ``part`` (a GAN's network), or of the whole model, by canonical name."""
    names = group_names(model.spec, part)
    return weights.canonical_variables(model, trainable_only=True, names=names)


def configure_threads() -> str:
    """Apply ``TRIPTYCH_THREADS`` to TensorFlow's intra- and inter-op pools (possible only before
    TensorFlow runs its first op, which is why backends load it first); returns the setting in force."""
    threads = intra_op_threads()
    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        return str(threads)
    return "default (every core)"


class KerasBackend(NativeBackend[SpecModel]):
    name = "keras"
    trains_compiled = True
    model_classes = MODEL_CLASSES

    def __init__(self) -> None:
        self._threads = configure_threads()
        configure_float32_exact()
        gpus = tf.config.list_logical_devices("GPU")
        self._device = "gpu:0" if gpus else "cpu"

    def framework_version(self) -> str:
        return f"keras {keras.__version__} (tensorflow {tf.__version__})"

    def threads(self) -> str:
        return self._threads

    def device(self) -> str:
        return self._device

    def release_compiled(self) -> None:
        """Nothing can be freed: TensorFlow keeps the XLA executable of every compiled ``tf.function``
        for the life of the process (measured: +123 memory maps per digits_cnn compiled for logits
        and a train step, unchanged after ``keras.backend.clear_session()`` and the eager
        context's ``clear_kernel_cache()``; docs/findings.md)."""

    def _new_model(
        self, model_class: Callable[..., SpecModel], spec: ModelSpec, seed: int, precision: Precision
    ) -> SpecModel:
        model = model_class(spec, seed=seed)
        model.create_variables()
        return model

    def _precision_scope(self, precision: Precision) -> contextlib.AbstractContextManager[None]:
        return _dtype_policy(precision)

    def _load(self, model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
        weights.load(model, params)

    def _freeze(self, model: SpecModel) -> None:
        weights.freeze(model)

    def load_params(self, model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
        weights.load(model, params)

    native_suffix = ".keras"  # the whole model: keras.saving.load_model rebuilds it from the spec in its config

    def save_native(self, model: SpecModel, path: str | Path) -> Path:
        return weights.save_weights_file(model, f"{path}{self.native_suffix}")

    def load_native(self, model: SpecModel, path: str | Path) -> None:
        weights.load_weights_file(model, path)

    def export_params(self, model: SpecModel) -> dict[str, np.ndarray]:
        return weights.export(model)

    def count_params(self, model: SpecModel) -> ParamCount:
        def size(variables: list[keras.Variable]) -> int:
            return sum(int(np.prod(v.shape)) for v in variables)

        return ParamCount(size(model.trainable_weights), size(model.non_trainable_weights))

    def logits(self, model: SpecModel, x: np.ndarray, *, training: bool = False, compiled: bool = False) -> np.ndarray:
        run = _compiled_call(model) if compiled else model
        return _to_numpy(model, logits_of(run(_inputs(model, x), training=training)))

    def forward(self, model: SpecModel, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        return _to_numpy(model, model.infer(_inputs(model, x), training=training))

    def layer_outputs(
        self, model: SpecModel, x: np.ndarray, paths: Mapping[str, NativePath], *, training: bool = False
    ) -> dict[str, np.ndarray]:
        with recording_outputs({name: resolve(model, path) for name, path in paths.items()}) as found:
            self.logits(model, x, training=training)
        return found

    def encode(self, model: SpecModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(model, VAE):
            raise SpecError("model", model.spec.name, "a VAE: encode reads q(z|x) from its encoder")
        check_inputs(model.spec, images, what="images", shape=(model.spec.input_size,))
        mean, log_variance = model.encode(_as(images, variable_dtype(model.precision)))
        return _to_numpy(model, mean), _to_numpy(model, log_variance)

    def _loss_and_grads(
        self, model: SpecModel, x: np.ndarray, targets: np.ndarray, loss: str, scale: float
    ) -> tuple[float, dict[str, np.ndarray]]:
        variables = weights.canonical_variables(model, trainable_only=True, names=trained_names(model.spec, loss))
        value, grads = _taped_loss_and_grads(
            model,
            list(variables.values()),
            _inputs(model, x),
            _targets(model, targets, loss),
            loss,
            lambda value: value * scale,
        )
        unscaled = {name: g.numpy() / scale if scale != 1.0 else g.numpy() for name, g in zip(variables, grads)}
        return float(value), weights.to_canonical(model, unscaled)

    def _native_optimizer(
        self, model: SpecModel, opt: OptimizerSpec, part: str | None, ported: bool
    ) -> keras.optimizers.Optimizer:
        optimizer = make_optimizer(opt, ported=ported)
        if model.precision == "mixed_float16":  # Keras's float16 recipe; it fixes the factor at 2
            if LOSS_SCALE.factor != 2.0:
                raise UnsupportedOption(
                    "keras", "LOSS_SCALE.factor", LOSS_SCALE.factor, "LossScaleOptimizer grows and backs off by 2"
                )
            optimizer = keras.optimizers.LossScaleOptimizer(
                optimizer, initial_scale=LOSS_SCALE.initial, dynamic_growth_steps=LOSS_SCALE.growth_interval
            )
        optimizer.spec = opt
        optimizer.build(list(_trained_variables(model, part).values()))
        return optimizer

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
        checked = weights.to_native(model, checked)
        before_step(native, native.spec)
        variables = _trained_variables(model, part)
        _unscaled(native).apply_gradients([(checked[name], variable) for name, variable in variables.items()])

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
        step = _train_step_function(model, native, loss, compiled=compiled)
        return float(step(inputs, _targets(model, targets, loss)))

    def learning_rates(self, schedule: ScheduleSpec) -> list[float]:
        return schedules.learning_rates(schedule)


BACKEND: Backend[SpecModel] = KerasBackend()
