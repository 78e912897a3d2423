"""What Keras leaves to its backend: gradients, a compiled step, and where tensors live.

Keras 3 has no backend-neutral gradient: its own trainers compute one per backend
(``keras/src/backend/{tensorflow,jax,torch}/trainer.py``), and so does this module, each the way
Keras's trainer for that backend does — ``tf.GradientTape`` under a ``tf.function``; a pure
function of the variables' values under ``keras.StatelessScope``, differentiated by
``jax.value_and_grad`` and compiled by ``jax.jit``; torch's autograd (``loss.backward()``), compiled
by ``torch.compile``. Everything else in ``impls/keras`` is plain Keras and runs unchanged on each.
:data:`ENGINE` is the one this process's Keras runs on (``KERAS_BACKEND``).
"""

from __future__ import annotations

import contextlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np

from impls.keras.models import EXECUTOR, SpecModel
from spec import engines
from spec.backend import cached
from spec.params import Precision

Loss = Callable[[Any, Any], Any]  # (inputs, targets) → the training loss, a scalar tensor
Scale = Callable[[Any], Any]  # the loss as differentiated (times a float16 loss scale)
Step = Callable[[Any, Any], Any]  # (inputs, targets) → the loss before the update


def unscaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that takes true gradients: a ``LossScaleOptimizer``'s inner one (it would
    divide them by its scale)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


class Engine(ABC):
    """One Keras backend's part of :class:`impls.keras.backend.KerasBackend`."""

    name: str  # Keras's name for it: tensorflow, jax, torch
    # The dtype of class ids: Keras's type promotion makes int64 int32 on every backend but TensorFlow
    # (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE); JAX without x64 has no int64.
    class_ids: str = "int32"
    # Why a float64 model is not float64 on this engine, if it is not (docs/findings.md, finding 19)
    float64_refused: str | None = None
    # Whether Model.fit compiles its step here by default (jit_compile="auto"): not on torch, where
    # "auto" is eager (keras/src/trainers/trainer.py, _resolve_auto_jit_compile)
    fit_compiles: bool = True

    def __init__(self) -> None:
        self.threads = engines.configure(self.name)
        self.device = engines.device(self.name)

    executor = EXECUTOR  # triptych's name for Keras on this engine

    def version(self) -> str:
        """The engine and its version, e.g. ``jax 0.10.2``."""
        return f"{self.name} {importlib.import_module(self.name).__version__}"

    def tensor(self, array: Any, dtype: str) -> Any:
        """``array`` (numpy, or already a tensor of the engine) as a tensor of ``dtype`` on the device."""
        if keras.ops.is_tensor(array):
            return keras.ops.cast(array, dtype)
        return keras.ops.convert_to_tensor(np.asarray(array, dtype), dtype=dtype)

    def in_precision(self, precision: Precision) -> contextlib.AbstractContextManager[object]:
        """What must be in force while a model of ``precision`` runs (JAX's x64 mode for float64)."""
        return contextlib.nullcontext()

    def inference(self) -> contextlib.AbstractContextManager[object]:
        """What a pass that is not differentiated runs under (torch: no autograd graph)."""
        return contextlib.nullcontext()

    @abstractmethod
    def loss_and_grads(
        self,
        model: SpecModel,
        variables: Sequence[keras.Variable],
        loss: Loss,
        x: Any,
        targets: Any,
        factor: float = 1.0,
    ) -> tuple[Any, list[Any]]:
        """One training pass: ``loss(x, targets)`` and the gradient of its value times ``factor``
        (a float16 loss scale) for each of ``variables``; the model's state (moving statistics,
        random seeds) moves on as in a training step. ``loss`` is made once per model and loss
        (the engine may keep what it compiles for it)."""

    @abstractmethod
    def train_step(
        self,
        model: SpecModel,
        optimizer: keras.optimizers.Optimizer,
        variables: Sequence[keras.Variable],
        loss: Loss,
        compiled: bool,
    ) -> Step:
        """The train step of ``optimizer`` on ``variables`` (those it was built with), eager or
        compiled by the engine's compiler."""

    @abstractmethod
    def compiled_call(self, model: SpecModel) -> Callable[[Any, bool], Any]:
        """The model's call, compiled: ``(x, training) → outputs``."""

    def release_compiled(self) -> None:  # noqa: B027 (nothing to free on TensorFlow and torch)
        """Free what the engine's compiler keeps, where it can."""


FLOAT64_DOWNCAST = (
    "Keras's type promotion (keras.backend.result_type) makes every float64 result float32 on every backend "
    "but TensorFlow (BIT64_TO_BIT32_DTYPE, keras/src/backend/common/dtypes.py), so on {engine} {ops} compute a "
    "float64 model in float32 (docs/findings.md, finding 19)"
)


def _scaled_loss(optimizer: keras.optimizers.Optimizer) -> Scale:
    """A ``LossScaleOptimizer``'s scaling (mixed_float16), else the loss as it is."""
    return getattr(optimizer, "scale_loss", lambda value: value)


class StatefulEngine(Engine):
    """An engine whose variables hold the state and are updated in place (TensorFlow, torch): a
    gradient taped or back-propagated from the loss, then the optimizer's update."""

    @abstractmethod
    def _grads(
        self, model: SpecModel, variables: Sequence[keras.Variable], loss: Loss, x: Any, targets: Any, scale: Scale
    ) -> tuple[Any, list[Any]]:
        """The loss and the gradient of its ``scale``d value for each of ``variables``."""

    @abstractmethod
    def _apply(
        self, optimizer: keras.optimizers.Optimizer, grads: list[Any], variables: Sequence[keras.Variable]
    ) -> None:
        """The optimizer's update of ``variables`` by ``grads``."""

    @abstractmethod
    def _compiled_step(self, model: SpecModel, step: Step) -> Step:
        """``step`` through the engine's compiler."""

    def loss_and_grads(
        self,
        model: SpecModel,
        variables: Sequence[keras.Variable],
        loss: Loss,
        x: Any,
        targets: Any,
        factor: float = 1.0,
    ) -> tuple[Any, list[Any]]:
        return self._grads(model, variables, loss, x, targets, lambda value: value * factor)

    def train_step(
        self,
        model: SpecModel,
        optimizer: keras.optimizers.Optimizer,
        variables: Sequence[keras.Variable],
        loss: Loss,
        compiled: bool,
    ) -> Step:
        scale = _scaled_loss(optimizer)

        def step(x: Any, targets: Any) -> Any:
            value, grads = self._grads(model, variables, loss, x, targets, scale)
            self._apply(optimizer, grads, variables)
            return value

        return self._compiled_step(model, step) if compiled else step


class TensorFlowEngine(StatefulEngine):
    name = "tensorflow"
    class_ids = "int64"

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        super().__init__()

    def _use_xla(self, model: SpecModel) -> bool:
        """Whether the compiled paths use XLA: not for a model with dropout on a CPU, where XLA's
        random-number generation made each step about 20× slower than TensorFlow's own kernels
        (30 ms vs 1.6 ms for the 64-512-10 digits net here): that step stays a graph-mode
        ``tf.function``."""
        on_cpu = not self.tf.config.list_logical_devices("GPU")
        return not (model.spec.has_dropout and on_cpu)

    def _grads(
        self, model: SpecModel, variables: Sequence[keras.Variable], loss: Loss, x: Any, targets: Any, scale: Scale
    ) -> tuple[Any, list[Any]]:
        with self.tf.GradientTape() as tape:
            value = loss(x, targets)
            scaled = scale(value)
        # An Embedding's gradient comes as IndexedSlices, one slice per looked-up token, repeats kept.
        # Keras's Adam squares those slices one by one for its second moment (Σg² where the dense rule
        # has (Σg)²) — a different update whenever a token repeats in the batch. Made dense here, the
        # update is the one torch and Optax compute.
        return value, [self.tf.convert_to_tensor(g) for g in tape.gradient(scaled, list(variables))]

    def _apply(
        self, optimizer: keras.optimizers.Optimizer, grads: list[Any], variables: Sequence[keras.Variable]
    ) -> None:
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    def _compiled_step(self, model: SpecModel, step: Step) -> Step:
        return self._function(model, step, reduce_retracing=True)

    def compiled_call(self, model: SpecModel) -> Callable[[Any, bool], Any]:
        return self._function(model, lambda x, training: model(x, training=training))

    def _function(self, model: SpecModel, python: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        """``python`` as a ``tf.function`` (XLA-compiled where :meth:`_use_xla`). AutoGraph is off: Keras
        code branches with ``keras.ops``, and AutoGraph cannot convert the spec's ``match`` statements."""
        return self.tf.function(python, jit_compile=self._use_xla(model), autograph=False, **options)

    # Nothing can be freed: TensorFlow keeps the XLA executable of every compiled tf.function for the
    # life of the process (measured: +123 memory maps per digits_cnn compiled for logits and a train
    # step, unchanged after keras.backend.clear_session() and the eager context's
    # clear_kernel_cache(); docs/findings.md).


class JaxEngine(Engine):
    """Keras on JAX computes on values, not variables: each pass runs inside a
    ``keras.StatelessScope`` that maps every variable it reads to a value, differentiated and
    compiled as a pure function of those values, whose new values are then assigned back."""

    name = "jax"
    float64_refused = FLOAT64_DOWNCAST.format(engine="JAX", ops="tanh (every recurrent cell), var, sin and cos")

    def __init__(self) -> None:
        import jax

        self.jax = jax
        super().__init__()

    def in_precision(self, precision: Precision) -> contextlib.AbstractContextManager[object]:
        # Without x64, JAX makes every float64 array float32 (with a warning only).
        return self.jax.enable_x64(True) if precision == "float64" else contextlib.nullcontext()

    def _pure_loss(
        self, state: Sequence[keras.Variable], trained: Sequence[keras.Variable], loss: Loss, scale: Scale
    ) -> Callable[..., Any]:
        """``loss`` as a function of the trained values and the values of ``state`` (every other
        variable it may read), returning the ``scale``d loss times ``factor``, and the loss with the
        new ``state``."""
        trained_ids = {id(v) for v in trained}
        others = [v for v in state if id(v) not in trained_ids]

        def pure(trained_values: list[Any], other_values: list[Any], x: Any, targets: Any, factor: Any) -> Any:
            mapping = [*zip(trained, trained_values, strict=True), *zip(others, other_values, strict=True)]
            with keras.StatelessScope(state_mapping=mapping) as scope:
                value = loss(x, targets)
                scaled = scale(value) * factor
            return scaled, (value, [scope.get_current_value(v) for v in others])

        return pure

    @staticmethod
    def _state(model: SpecModel, optimizer: keras.optimizers.Optimizer | None = None) -> list[keras.Variable]:
        """Every variable a pass reads: the model's (random seeds included) and the optimizer's."""
        found = {id(v): v for v in model.variables}
        if optimizer is not None:
            found.update({id(v): v for v in optimizer.variables})
        return list(found.values())

    def loss_and_grads(
        self,
        model: SpecModel,
        variables: Sequence[keras.Variable],
        loss: Loss,
        x: Any,
        targets: Any,
        factor: float = 1.0,
    ) -> tuple[Any, list[Any]]:
        # compiled, as Keras's JAX trainer always runs it: op by op, JAX traces every operation for
        # its derivative in Python (about 20x slower on the digits CNN)
        state = self._state(model)
        others = [v for v in state if all(v is not t for t in variables)]
        key = f"loss_and_grads {id(loss)} {[id(v) for v in variables]}"
        run = cached(
            model,
            key,
            lambda: self.jax.jit(
                self.jax.value_and_grad(self._pure_loss(state, variables, loss, lambda value: value), has_aux=True)
            ),
        )
        (_, (value, after)), grads = run(
            [v.value for v in variables], [v.value for v in others], x, targets, self.tensor(factor, variables[0].dtype)
        )
        for variable, new in zip(others, after, strict=True):
            variable.assign(new)
        return value, list(grads)

    def train_step(
        self,
        model: SpecModel,
        optimizer: keras.optimizers.Optimizer,
        variables: Sequence[keras.Variable],
        loss: Loss,
        compiled: bool,
    ) -> Step:
        jax = self.jax
        trained = list(optimizer._trainable_variables)  # the order stateless_apply takes them in
        assert {id(v) for v in trained} == {id(v) for v in variables}, "the optimizer trains other variables"
        state = self._state(model, optimizer)
        others = [v for v in state if all(v is not t for t in trained)]
        optimizer_variables = list(optimizer.variables)
        pure = self._pure_loss(state, trained, loss, _scaled_loss(optimizer))

        # (a hyper-parameter held in a Variable, such as the ε-hat of impls.keras.optimizers, is one of
        # optimizer.variables: Keras tracks every Variable an optimizer is given)
        def step(trained_values: list[Any], other_values: list[Any], x: Any, targets: Any) -> Any:
            (_, (value, after)), grads = jax.value_and_grad(pure, has_aux=True)(
                trained_values, other_values, x, targets, 1.0
            )
            by_id = {id(v): a for v, a in zip(others, after, strict=True)}
            new_trained, new_optimizer = optimizer.stateless_apply(
                [by_id[id(v)] for v in optimizer_variables], grads, trained_values
            )
            by_id.update({id(v): a for v, a in zip(optimizer_variables, new_optimizer, strict=True)})
            return value, new_trained, [by_id[id(v)] for v in others]

        run = jax.jit(step) if compiled else step

        def train(x: Any, targets: Any) -> Any:
            value, new_trained, new_others = run([v.value for v in trained], [v.value for v in others], x, targets)
            for variable, new in [*zip(trained, new_trained, strict=True), *zip(others, new_others, strict=True)]:
                variable.assign(new)
            return value

        return train

    def compiled_call(self, model: SpecModel) -> Callable[[Any, bool], Any]:
        state = self._state(model)

        def pure(values: list[Any], x: Any, training: bool) -> Any:
            with keras.StatelessScope(state_mapping=list(zip(state, values, strict=True))) as scope:
                outputs = model(x, training=training)
            return outputs, [scope.get_current_value(v) for v in state]

        run = self.jax.jit(pure, static_argnames="training")

        def call(x: Any, training: bool) -> Any:
            outputs, after = run([v.value for v in state], x, training=training)
            for variable, new in zip(state, after, strict=True):
                variable.assign(new)
            return outputs

        return call

    def release_compiled(self) -> None:
        self.jax.clear_caches()


class TorchEngine(StatefulEngine):
    name = "torch"
    fit_compiles = False
    float64_refused = FLOAT64_DOWNCAST.format(engine="torch", ops="matmul (every Dense layer), var and maximum")

    def __init__(self) -> None:
        import torch

        self.torch = torch
        super().__init__()

    def inference(self) -> contextlib.AbstractContextManager[object]:
        return self.torch.no_grad()

    def _grads(
        self, model: SpecModel, variables: Sequence[keras.Variable], loss: Loss, x: Any, targets: Any, scale: Scale
    ) -> tuple[Any, list[Any]]:
        model.zero_grad(set_to_none=True)  # a Keras layer on torch is a torch.nn.Module
        value = loss(x, targets)
        scale(value).backward()
        return value.detach(), [v.value.grad for v in variables]

    def _apply(
        self, optimizer: keras.optimizers.Optimizer, grads: list[Any], variables: Sequence[keras.Variable]
    ) -> None:
        with self.torch.no_grad():
            optimizer.apply(grads, list(variables))

    def _compiled_step(self, model: SpecModel, step: Step) -> Step:
        # what Keras's own torch trainer does under jit_compile=True (keras/src/backend/torch/trainer.py)
        compiled: Step = self.torch.compile(step)
        return compiled

    def compiled_call(self, model: SpecModel) -> Callable[[Any, bool], Any]:
        compiled = self.torch.compile(model)

        def call(x: Any, training: bool) -> Any:
            with self.torch.no_grad():
                return compiled(x, training=training)

        return call


def _engine() -> Engine:
    backend = keras.backend.backend()
    engines_ = {engine.name: engine for engine in (TensorFlowEngine, JaxEngine, TorchEngine)}
    if backend not in engines_:
        from spec.errors import BackendUnavailable

        raise BackendUnavailable(f"Keras runs on {backend!r}; triptych runs it on {sorted(engines_)}")
    return engines_[backend]()


ENGINE: Engine = _engine()


def cached_step(
    model: SpecModel,
    optimizer: keras.optimizers.Optimizer,
    variables: Sequence[keras.Variable],
    loss_name: str,
    loss: Loss,
    compiled: bool,
) -> Step:
    """:meth:`Engine.train_step`, made once per (model, optimizer, loss, mode)."""
    steps = cached(model, "train_steps", dict)
    key = (id(optimizer), loss_name, compiled)
    if key not in steps:
        steps[key] = ENGINE.train_step(model, optimizer, variables, loss, compiled)
    return steps[key]


@contextlib.contextmanager
def running(model: SpecModel) -> Iterator[None]:
    """What a pass of ``model`` runs under on this engine (its precision's mode)."""
    with ENGINE.in_precision(model.precision):
        yield
