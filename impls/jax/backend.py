"""The :class:`spec.backend.Backend` contract for JAX with Flax NNX.

Inference and gradients run under ``jax.jit`` on the model's split state (``nnx.split`` /
``nnx.merge``): the Python module is rebuilt inside the trace, so the compiled function sees only
arrays. The compiled train step, called thousands of times, goes further: model and optimizer are
split once, and their state passes from step to step through a plain ``jax.jit`` with the state
donated — no module graph walked per step (see :class:`HeldState`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impls.jax import schedules, weights
from impls.jax.losses import OWN_LOSSES, compute_loss
from impls.jax.models import MODEL_CLASSES, VAE, SpecModel, computing_in, logits_of, recorded_outputs
from impls.jax.optimizers import LossScaleState, loss_scaled, make_optimizer
from spec import engines
from spec.backend import Backend, NativeBackend, drop_native_cache, native_cache
from spec.errors import SpecError
from spec.inputs import batch_dtype, check_inputs
from spec.layer_paths import NativePath
from spec.losses import takes_class_ids
from spec.models import (
    ModelSpec,
)
from spec.optimizers import OptimizerSpec
from spec.params import GAN_LOSS_TRAINS, MIXED_PRECISIONS, ParamCount, Precision, compute_dtype, variable_dtype
from spec.precision import LOSS_SCALE
from spec.schedules import ScheduleSpec


def _inputs(model: SpecModel, x: np.ndarray) -> jax.Array:
    """A batch (checked against the spec) in the dtype the model takes: values in its precision, or int32 token ids."""
    check_inputs(model.spec, x)
    return jnp.asarray(x, batch_dtype(model.spec, model.precision))


def _targets(model: SpecModel, targets: np.ndarray, loss: str) -> jax.Array:
    return jnp.asarray(targets, jnp.int32 if takes_class_ids(loss) else variable_dtype(model.precision))


def precision_scope(precision: Precision) -> contextlib.AbstractContextManager[object]:
    """JAX's 64-bit mode for a float64 model's calls, and only for them: turned on for the whole
    process it would change float32 runs too (``jnp.zeros`` and Python floats default to float64)."""
    return jax.enable_x64(True) if precision == "float64" else contextlib.nullcontext()


def _to_numpy(model: SpecModel, array: jax.Array) -> np.ndarray:
    """A model's output as a numpy array in the dtype of its variables (a mixed-precision model's
    bfloat16 or float16 outputs as float32)."""
    return np.asarray(array, variable_dtype(model.precision))


P = ParamSpec("P")
R = TypeVar("R")


def in_model_precision(
    method: Callable[Concatenate[JaxBackend, SpecModel, P], R],
) -> Callable[Concatenate[JaxBackend, SpecModel, P], R]:
    """A backend method on ``model`` run in the model's precision (:func:`precision_scope`)."""

    @functools.wraps(method)
    def run(self: JaxBackend, model: SpecModel, *args: P.args, **kwargs: P.kwargs) -> R:
        with precision_scope(model.precision):
            return method(self, model, *args, **kwargs)

    return run


def training_loss(model: SpecModel, x: jax.Array, targets: jax.Array, loss: str) -> jax.Array:
    """The spec's loss on one batch plus its L2 term."""
    if loss in OWN_LOSSES:  # a kind's own (a VAE's, a GAN's): from more than the logits
        return OWN_LOSSES[loss](model, x, targets, loss)
    value = compute_loss(loss, model(x), targets, model.spec.output_activation)
    return value + model.l2_penalty() if model.spec.kernel_l2 else value


def value_and_grads(
    model: SpecModel, x: jax.Array, targets: jax.Array, loss: str, scale: jax.Array | float = 1.0
) -> tuple[jax.Array, nnx.State]:
    """The training loss and the gradient of the loss times ``scale`` (float16 loss scaling) for the
    parameters a step with ``loss`` trains (a GAN loss: its own network's)."""
    trained = weights.trainable(model, GAN_LOSS_TRAINS.get(loss))

    def scaled_loss(model: SpecModel) -> tuple[jax.Array, jax.Array]:
        value = training_loss(model, x, targets, loss)
        return value * scale, value

    (_, value), grads = nnx.value_and_grad(scaled_loss, argnums=nnx.DiffState(0, trained), has_aux=True)(model)
    return value, grads


def current_loss_scale(optimizer: nnx.Optimizer) -> jax.Array | float:
    """The loss scale an optimizer made with :func:`impls.jax.optimizers.loss_scaled` is at (1.0 for
    any other): the factor its next step's gradients must carry."""
    state = optimizer.opt_state
    if not isinstance(state, LossScaleState):
        return 1.0
    return state.loss_scale.loss_scale[...]


# Each function returns the model's state after the call along with its result: in training mode
# dropout advances the model's random stream, which must persist to the next call.
@jax.jit
def _logits(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> tuple[jax.Array, nnx.State]:
    model = nnx.merge(graphdef, state)
    return logits_of(model(x)), nnx.state(model)


@jax.jit
def _encode(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return nnx.merge(graphdef, state).encode(images)


@partial(jax.jit, static_argnames="loss")
def _compiled_loss_and_grads(
    graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array, targets: jax.Array, loss: str, scale: jax.Array
) -> tuple[jax.Array, nnx.State, nnx.State]:
    """The loss and its gradients through a loss ``scale`` (a power of two, so dividing is exact; 1
    but for float16), traced: a float16 model whose gradients overflow is tried at smaller scales
    without compiling again."""
    model = nnx.merge(graphdef, state)
    value, grads = value_and_grads(model, x, targets, loss, scale)
    return value, jax.tree.map(lambda g: g / scale.astype(g.dtype), grads), nnx.state(model)


@jax.jit
def _apply_gradients(graphdef: nnx.GraphDef, state: nnx.State, grads: nnx.State) -> nnx.State:
    model, optimizer = nnx.merge(graphdef, state)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer))


def train_step_body(
    model: SpecModel,
    optimizer: nnx.Optimizer | Mapping[str, nnx.Optimizer],
    x: jax.Array,
    targets: jax.Array,
    loss: str,
) -> jax.Array:
    """One training step on live NNX objects: eager as it stands, compiled inside :func:`_state_train_step`.
    A GAN's ``optimizer`` is one per network, by name: the loss picks the one it trains."""
    native = NativeBackend.optimizer_for_loss(optimizer, loss)
    value, grads = value_and_grads(model, x, targets, loss, current_loss_scale(native))
    native.update(model, grads)
    return value


@partial(jax.jit, static_argnames=("treedef", "loss"), donate_argnums=2)
def _state_train_step(
    graphdef: nnx.GraphDef,
    treedef: jax.tree_util.PyTreeDef,
    leaves: list[jax.Array],
    x: jax.Array,
    targets: jax.Array,
    loss: str,
) -> tuple[jax.Array, list[jax.Array]]:
    model, optimizer = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
    value = train_step_body(model, optimizer, x, targets, loss)
    return value, jax.tree.leaves(nnx.state((model, optimizer)))


@dataclass
class HeldState:
    """Model and optimizer split once for a run of compiled train steps: each step takes the state's
    arrays, donates their buffers and returns the next ones, so no step walks the module graph
    (``nnx.jit`` and even ``nnx.cached_partial`` cost 0.2–0.5 ms of Python per call on the MNIST
    MLP, a third of the step). The state travels as its flat list of arrays: flattening an
    ``nnx.State`` (one ``Variable`` object per leaf) on every call cost ~0.1 ms more. The live model
    and optimizer are stale meanwhile — their buffers donated — until :func:`synced` writes the
    state back, which every other backend method does first."""

    optimizer: nnx.Optimizer | nnx.Dict  # a GAN's: one per network
    graphdef: nnx.GraphDef
    treedef: jax.tree_util.PyTreeDef
    leaves: list[jax.Array]


_HELD = "held_state"


def synced(model: SpecModel) -> SpecModel:
    """The live model, with the state of any compiled train steps written back into it and its
    optimizer. Drops the split kept for evaluation passes (:class:`InferenceState`): every backend
    method but those passes calls this before it reads or changes the model."""
    held = drop_native_cache(model).get(_HELD)  # before any split sees it (spec.backend.drop_native_cache)
    if held is not None:
        nnx.update((model, held.optimizer), jax.tree.unflatten(held.treedef, held.leaves))
    return model


def held_state(model: SpecModel, optimizer: nnx.Optimizer | nnx.Dict, loss: str) -> HeldState:
    """The state compiled train steps of ``model`` with ``optimizer`` and ``loss`` pass along."""
    held = native_cache(model).get(_HELD)
    if held is None or held.optimizer is not optimizer:
        synced(model).set_mode(True)
        graphdef, state = nnx.split((model, optimizer))
        leaves, treedef = jax.tree.flatten(state)
        held = HeldState(optimizer, graphdef, treedef, leaves)
        native_cache(model)[_HELD] = held
    return held


@dataclass
class InferenceState:
    """The model split once for a run of compiled evaluation-mode passes, which change nothing in it
    (no dropout draws, no BatchNorm updates): each pass skips ``nnx.split`` and ``nnx.update``, almost
    half of a small model's forward time (0.74 → 0.41 ms on the MNIST MLP at batch 128). Valid until
    :func:`synced` drops it, before anything else reads or changes the model — or until one of the
    model's variables holds another array than the split took (``nnx.update``, or a value set from
    outside the backend), which :meth:`is_current` sees: the split shares the model's ``Variable``
    objects, and JAX arrays never change in place. (A ``Variable`` object replaced by another is not
    seen: the split still holds the old one.)"""

    graphdef: nnx.GraphDef
    treedef: jax.tree_util.PyTreeDef
    leaves: list[jax.Array]
    variables: list[nnx.Variable]

    def is_current(self) -> bool:
        return all(variable.get_raw_value() is leaf for variable, leaf in zip(self.variables, self.leaves, strict=True))


_INFERENCE = "inference_state"


def inference_state(model: SpecModel) -> InferenceState:
    held = native_cache(model).get(_INFERENCE)
    if held is None or not held.is_current():
        synced(model).set_mode(False)
        graphdef, state = nnx.split(model)
        leaves, treedef = jax.tree.flatten(state)
        variables = jax.tree.leaves(state, is_leaf=lambda leaf: isinstance(leaf, nnx.Variable))
        held = native_cache(model)[_INFERENCE] = InferenceState(graphdef, treedef, leaves, variables)
    return held


@partial(jax.jit, static_argnames="treedef")
def _evaluate(
    graphdef: nnx.GraphDef, treedef: jax.tree_util.PyTreeDef, leaves: list[jax.Array], x: jax.Array
) -> jax.Array:
    """The model's logits in evaluation mode, from its split state."""
    return logits_of(nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))(x))


class JaxBackend(NativeBackend[SpecModel]):
    name = "jax"
    trains_compiled = True
    model_classes = MODEL_CLASSES
    # an NNX module's metaclass runs its __init__ (modules need not call their base's)
    layer_constructor = (type(nnx.Module), "_pytree_meta_construct", 1)

    def __init__(self) -> None:
        self._threads = engines.configure("jax")
        self._device = engines.device("jax")

    def threads(self) -> str:
        return self._threads

    def framework_version(self) -> str:
        import flax
        import optax

        return f"jax {jax.__version__} (flax {flax.__version__}, optax {optax.__version__})"

    def device(self) -> str:
        return self._device

    def release_compiled(self) -> None:
        """jax.jit keeps every executable it compiled, for a model's closures too, until its caches
        are cleared (measured: +119 memory maps per digits_cnn compiled for logits and a train
        step, back to +29 after clearing)."""
        jax.clear_caches()

    def _new_model(
        self, model_class: Callable[..., SpecModel], spec: ModelSpec, seed: int, precision: Precision
    ) -> SpecModel:
        # An abstract model (shapes only), filled from the parameters: running Flax's own initializers
        # eagerly would compile each of their ops for every new shape, seconds per model on a CPU.
        return nnx.eval_shape(lambda: model_class(spec, rngs=nnx.Rngs(params=0, dropout=seed)))

    def _precision_scope(self, precision: Precision) -> contextlib.AbstractContextManager[object]:
        if precision in MIXED_PRECISIONS:  # Flax modules take a compute dtype when made
            return computing_in(jnp.dtype(compute_dtype(precision)))
        return precision_scope(precision)

    def _load(self, model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
        weights.load(model, params)

    def _freeze(self, model: SpecModel) -> None:
        weights.freeze(model)

    def _ready(self, model: SpecModel, seed: int) -> SpecModel:
        # the abstract build left the random streams without keys: dropout's, and the carry stream
        # nnx.RNN keeps (its cells draw their zero initial states through it)
        nnx.reseed(model, dropout=seed, carry=0)
        return model

    @in_model_precision
    def load_params(self, model: SpecModel, params: Mapping[str, np.ndarray]) -> None:
        weights.load(synced(model), params)

    native_suffix = ".msgpack"

    def save_native(self, model: SpecModel, path: str | Path) -> Path:
        return weights.save_state_file(synced(model), f"{path}{self.native_suffix}")

    def load_native(self, model: SpecModel, path: str | Path) -> None:
        weights.load_state_file(synced(model), path)

    @in_model_precision
    def export_params(self, model: SpecModel) -> dict[str, np.ndarray]:
        return weights.export(synced(model))

    def count_params(self, model: SpecModel) -> ParamCount:
        def size(state: nnx.State) -> int:
            return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state))

        # everything that is not a parameter, except random-number streams (dropout's key and counter),
        # which hold no weights: BatchNorm statistics would count here
        state = nnx.state(synced(model), nnx.Not(nnx.RngState))
        params, rest = nnx.split_state(state, weights.trainable(model), ...)
        return ParamCount(size(params), size(rest))

    @in_model_precision
    def logits(self, model: SpecModel, x: np.ndarray, *, training: bool = False, compiled: bool = False) -> np.ndarray:
        if not compiled:  # eager: every operation dispatched on its own
            synced(model).set_mode(training)
            return _to_numpy(model, logits_of(model(_inputs(model, x))))
        if not training:
            held = inference_state(model)
            return _to_numpy(model, _evaluate(held.graphdef, held.treedef, held.leaves, _inputs(model, x)))
        synced(model).set_mode(True)
        result, state = _logits(*nnx.split(model), _inputs(model, x))
        nnx.update(model, state)  # dropout's random stream advanced
        return _to_numpy(model, result)

    @in_model_precision
    def forward(self, model: SpecModel, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        synced(model).set_mode(training)
        return _to_numpy(model, model.infer(_inputs(model, x)))

    @in_model_precision
    def layer_outputs(
        self, model: SpecModel, x: np.ndarray, paths: Mapping[str, NativePath], *, training: bool = False
    ) -> dict[str, np.ndarray]:
        synced(model).set_mode(training)
        return recorded_outputs(model, paths, lambda: model(_inputs(model, x)))

    @in_model_precision
    def encode(self, model: SpecModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(model, VAE):
            raise SpecError("model", model.spec.name, "a VAE: encode reads q(z|x) from its encoder")
        check_inputs(model.spec, images, what="images", shape=(model.spec.input_size,))
        synced(model).set_mode(False)
        mean, log_variance = _encode(*nnx.split(model), jnp.asarray(images, variable_dtype(model.precision)))
        return _to_numpy(model, mean), _to_numpy(model, log_variance)

    @in_model_precision
    def _loss_and_grads(
        self, model: SpecModel, x: np.ndarray, targets: np.ndarray, loss: str, scale: float
    ) -> tuple[float, dict[str, np.ndarray]]:
        synced(model).set_mode(True)
        value, grads, state = _compiled_loss_and_grads(
            *nnx.split(model), _inputs(model, x), _targets(model, targets, loss), loss, jnp.float32(scale)
        )
        nnx.update(model, state)
        return float(value), weights.from_state(model, grads, GAN_LOSS_TRAINS.get(loss))

    @in_model_precision
    def _native_optimizer(self, model: SpecModel, opt: OptimizerSpec, part: str | None, ported: bool) -> nnx.Optimizer:
        tx = make_optimizer(opt, ported=ported)
        if model.precision == "mixed_float16":
            tx = loss_scaled(tx, LOSS_SCALE)
        return nnx.Optimizer(synced(model), tx, wrt=weights.trainable(model, part))

    def _optimizer_group(self, optimizers: dict[str, nnx.Optimizer]) -> nnx.Dict:
        return nnx.Dict(optimizers)  # a graph node: nnx.split carries a GAN's two optimizers with the model

    @in_model_precision
    def apply_gradients(
        self, model: SpecModel, optimizer: nnx.Optimizer | nnx.Dict, grads: Mapping[str, np.ndarray]
    ) -> None:
        part, native = self.optimizer_for_grads(model, optimizer, grads)
        grads_state = weights.to_state(synced(model), grads, part)
        graphdef, state = nnx.split((model, native))
        nnx.update((model, native), _apply_gradients(graphdef, state, grads_state))

    @in_model_precision
    def _train_step(
        self,
        model: SpecModel,
        optimizer: nnx.Optimizer | nnx.Dict,
        x: np.ndarray,
        targets: np.ndarray,
        loss: str,
        compiled: bool,
    ) -> float:
        inputs, target_array = _inputs(model, x), _targets(model, targets, loss)
        if not compiled:  # eager: every operation dispatched on its own
            synced(model).set_mode(True)
            return float(train_step_body(model, optimizer, inputs, target_array, loss))
        held = held_state(model, optimizer, loss)
        value, held.leaves = _state_train_step(
            held.graphdef, held.treedef, held.leaves, inputs, target_array, loss=loss
        )
        return float(value)

    def learning_rates(self, schedule: ScheduleSpec) -> list[float]:
        return schedules.learning_rates(schedule)


BACKEND: Backend[SpecModel] = JaxBackend()
