"""The backend contract every ``impls/<name>`` satisfies, and the registry that finds them.

Tests and the report talk only to this contract. A backend builds its framework's native model from a
spec, exchanges parameters in the canonical layout of :mod:`spec.params`, and returns losses and
gradients under canonical names, and applies the spec's optimizers with its own native optimizer.
``fit`` joins the contract with the training recipes.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from spec.errors import BackendUnavailable, SpecError
from spec.inputs import check_targets
from spec.layer_paths import LayerPaths, NativePath, check_layer_paths
from spec.losses import check_model_loss
from spec.models import ModelSpec
from spec.optimizers import OptimizerSpec
from spec.params import GAN_LOSS_TRAINS, PRECISIONS, ParamCount, Precision, group_of, optimizer_groups
from spec.precision import LOSS_SCALE
from spec.schedules import ScheduleSpec

# The executors: each runs one implementation (``impls/<framework>``) on one engine. ``impls/keras`` is
# plain Keras 3 code and runs on each of Keras's three backends; Keras fixes its backend once per
# process (``KERAS_BACKEND``), so a process runs at most one Keras executor (:func:`process_backends`).
KERAS_ENGINES = {"keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}
BACKEND_NAMES = ("torch", "keras", "jax", "keras-jax", "keras-torch")
FRAMEWORKS = ("torch", "keras", "jax")  # the implementations, impls/<name>
KERAS_BACKEND_ENV = "KERAS_BACKEND"
THREADS_ENV = "TRIPTYCH_THREADS"


def framework_of(name: str) -> str:
    """The implementation an executor runs: ``keras`` for each Keras executor, else its own name."""
    if name not in BACKEND_NAMES:
        raise SpecError("backend", name, BACKEND_NAMES)
    return "keras" if name in KERAS_ENGINES else name


def engine_of(name: str) -> str:
    """The numeric engine an executor runs on: ``tensorflow``, ``jax`` or ``torch`` (:mod:`spec.engines`)."""
    framework_of(name)  # a known executor
    return KERAS_ENGINES.get(name, name)


def marker_of(name: str) -> str:
    """The pytest marker of an executor's tests (``keras_jax``: a marker is a Python name)."""
    return name.replace("-", "_")


def keras_engine() -> str:
    """The Keras backend of this process: the one Keras runs on once imported, else the one it will
    take (``KERAS_BACKEND``, TensorFlow by default as triptych sets it)."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return str(keras.backend.backend())
    return os.environ.get(KERAS_BACKEND_ENV, "tensorflow")


def keras_executor(engine: str) -> str | None:
    """The Keras executor running on ``engine``, if any (``jax`` → ``keras-jax``)."""
    return next((name for name, on in KERAS_ENGINES.items() if on == engine), None)


def process_backends() -> tuple[str, ...]:
    """The executors this process can run: every framework's own, and the Keras executor of its
    Keras backend (:func:`keras_engine`)."""
    keras = keras_executor(keras_engine())
    return tuple(name for name in BACKEND_NAMES if name not in KERAS_ENGINES or name == keras)


def choose_keras_engine(name: str) -> None:
    """Make this process's Keras run on the engine of Keras executor ``name``: sets ``KERAS_BACKEND``
    before Keras is imported; raises :class:`BackendUnavailable` where Keras already runs on another
    backend, or ``KERAS_BACKEND`` names another."""
    engine = KERAS_ENGINES[name]
    if "keras" not in sys.modules and os.environ.get(KERAS_BACKEND_ENV, engine) == engine:
        os.environ[KERAS_BACKEND_ENV] = engine
        return
    if keras_engine() != engine:
        raise BackendUnavailable(
            f"backend {name!r} runs Keras on {engine}, but this process's Keras runs on {keras_engine()} "
            f"({KERAS_BACKEND_ENV}); Keras fixes its backend once per process, so run {name} in a process of "
            f"its own: `pytest --backend {name}` (make test runs one per Keras backend)"
        )


def intra_op_threads() -> int | None:
    """The number of threads each framework may use inside one op, from ``TRIPTYCH_THREADS`` (unset:
    each framework's own default, usually every core). Every backend applies it when it loads, so
    speed comparisons run the frameworks on equal terms; set it before the first backend is loaded."""
    raw = os.environ.get(THREADS_ENV)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise SpecError(THREADS_ENV, raw, "a positive integer (threads per op), or unset")
    return int(raw)


class NativeModel(Protocol):
    """A backend's built model as the framework-neutral code sees it: the framework's own object,
    opaque but for its spec, where it keeps each canonical layer (:mod:`spec.layer_paths`) and the
    precision it was built in (:meth:`Backend.build`)."""

    spec: ModelSpec
    layer_paths: LayerPaths
    precision: Precision


M = TypeVar("M", bound=NativeModel)


@runtime_checkable
class Backend(Protocol[M]):
    """What each framework implementation provides. ``model`` is the framework's native model object (a
    :class:`NativeModel` of type ``M``: ``Backend[SpecModel]`` for a backend's own model class; plain
    ``Backend`` where any will do), ``optimizer`` its native optimizer (a GAN's: one per network, by name).

    Batches ``x`` are numpy arrays in the dtype of :attr:`spec.models.ModelSpec.input_dtype` — float32 values,
    or int32 token ids for a Transformer — and targets numpy arrays for the loss; a backend also
    accepts its own framework's arrays there (the benchmarks hold their batches on the device).
    Every method that takes a batch checks it first with :func:`spec.inputs.check_inputs` and raises
    :class:`spec.errors.BatchError` for one that does not fit the spec; any float dtype is taken as
    the model's precision (float32 unless built otherwise)."""

    @property
    def name(self) -> str:
        """The executor: ``torch``, ``keras``, ``jax``, ``keras-jax``, ``keras-torch`` (:data:`BACKEND_NAMES`)."""
        ...

    @property
    def framework(self) -> str:
        """The implementation it runs (``impls/<framework>``): ``keras`` for each Keras executor."""
        ...

    @property
    def trains_compiled(self) -> bool:
        """Whether the framework's own training loop compiles its step, which :func:`spec.training.fit`
        follows unless told: Keras's ``Model.fit`` runs a ``tf.function``, JAX code jits its step, a
        torch loop runs eagerly (``torch.compile`` is opt-in). Everywhere else ``compiled`` defaults
        to eager on every backend."""
        ...

    def framework_version(self) -> str:
        """Version string of the framework, e.g. ``torch 2.13.0``."""
        ...

    def device(self) -> str:
        """The device models run on, e.g. ``cpu`` or ``cuda:0``."""
        ...

    def threads(self) -> str:
        """The intra-op thread setting in force, e.g. ``1`` or ``default (2)``."""
        ...

    def release_compiled(self) -> None:
        """Free the compiled programs the framework keeps for models no longer referenced, where it
        can. A compiled program holds memory maps for its code (about 120 per model on XLA's CPU
        backend, measured on digits_cnn); a process that compiles hundreds of models reaches the
        kernel's ``vm.max_map_count``, where XLA segfaults (docs/findings.md). The suite calls this
        after each test module, ``make compare`` after each job."""
        ...

    def build(
        self, spec: ModelSpec, params: Mapping[str, np.ndarray], *, seed: int = 0, precision: Precision = "float32"
    ) -> M:
        """A native model for ``spec`` holding ``params`` (canonical names and layout); ``seed`` seeds the
        model's own random streams (dropout masks) with the framework's generator. ``precision``: the
        dtype of every tensor it holds and computes — float32, or float64 as a witness (torch's
        ``float64`` modules, Keras's ``float64`` dtype policy, JAX with x64 for this model's calls),
        which takes and returns float64 arrays: inputs, targets, exports, gradients."""
        ...

    def load_params(self, model: M, params: Mapping[str, np.ndarray]) -> None:
        """Overwrite the model's tensors with canonical ``params`` (checked against its spec)."""
        ...

    native_suffix: str  # the suffix of save_native's files: ".pt", ".keras", ".msgpack"

    def save_native(self, model: M, path: str | Path) -> Path:
        """Write the model's tensors in the framework's own format to ``path`` + :attr:`native_suffix`
        (torch: its state dict by ``torch.save``; Keras: the whole model by ``model.save``, which
        ``keras.saving.load_model`` rebuilds; Flax: the NNX state's parameters and batch statistics
        as msgpack, ``flax.serialization``); returns the path."""
        ...

    def load_native(self, model: M, path: str | Path) -> None:
        """Load a file in :meth:`save_native`'s format into ``model``. Every tensor is required; a
        missing, corrupt or mismatched file raises :class:`spec.errors.WeightFileError` naming the
        file and, where one is at fault, the tensor and its shapes."""
        ...

    def export_params(self, model: M) -> dict[str, np.ndarray]:
        """The model's tensors under canonical names and layout, as numpy arrays in the model's
        precision (float32 unless built otherwise): everything the
        model computes with, so the judge on the export gives the model's outputs (a native tensor the
        spec has no name for, such as torch's held ``bias_hh``, is folded into its canonical one)."""
        ...

    def count_params(self, model: M) -> ParamCount:
        """Trainable and non-trainable counts, as the framework itself reports them."""
        ...

    def forward(self, model: M, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        """The model's output (after its output activation) for a batch ``x``, run eagerly."""
        ...

    def logits(self, model: M, x: np.ndarray, *, training: bool = False, compiled: bool = False) -> np.ndarray:
        """The model's output before its output activation; ``compiled`` as for :meth:`train_step`."""
        ...

    def layer_outputs(
        self, model: M, x: np.ndarray, paths: Mapping[str, NativePath], *, training: bool = False
    ) -> dict[str, np.ndarray]:
        """One eager pass of ``x``; by name, what the native layer at each of ``paths`` (paths as in
        ``model.layer_paths``) returned, in the canonical layout (feature maps NHWC; of a layer that
        returns a tuple, such as an RNN's outputs and state, the first element)."""
        ...

    def encode(self, model: M, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A VAE's encoder outputs for flattened ``images`` (without ε): the mean and the
        log-variance of q(z|x), each (batch, latent_size)."""
        ...

    def loss_and_grads(
        self, model: M, x: np.ndarray, targets: np.ndarray, loss: str
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The training loss (named as in :mod:`spec.losses`, plus the spec's L2 term) and its gradient
        per canonical parameter, with the model in training mode (dropout active)."""
        ...

    def make_optimizer(self, model: M, opt: OptimizerSpec, *, ported: bool = False) -> Any:
        """The framework's native optimizer for ``model``, configured to follow ``opt`` exactly; raises
        :class:`spec.errors.UnsupportedOption` for an option the framework cannot express. With
        ``ported``, such a rule runs instead as the small port of it the backend carries (a
        ``torch.optim.Optimizer`` subclass, …), where it has one: for a ported model whose training
        must continue by its source's rule. Reports label it "ported"; native is the default."""
        ...

    def apply_gradients(self, model: M, optimizer: Any, grads: Mapping[str, np.ndarray]) -> None:
        """One optimizer step with canonical ``grads`` (as from :meth:`loss_and_grads`)."""
        ...

    def train_step(
        self,
        model: M,
        optimizer: Any,
        x: np.ndarray,
        targets: np.ndarray,
        loss: str,
        *,
        compiled: bool = False,
    ) -> float:
        """One training step — forward in training mode, loss, gradients, optimizer update; returns the
        training loss (with the L2 term) before the update. ``compiled``: ``True`` through the
        framework's compiler (``torch.compile``, an XLA-compiled ``tf.function``, ``jax.jit``),
        ``False`` eagerly, one operation at a time."""
        ...

    def learning_rates(self, schedule: ScheduleSpec) -> list[float]:
        """The learning rate the framework's native schedule applies at steps 0 … total_steps − 1."""
        ...


class NativeBackend(ABC, Generic[M]):
    """The framework-neutral half of :class:`Backend`, written once: which native class builds a spec
    (the ``{spec class: model class}`` table each ``impls/<name>/models.py`` exports as
    ``MODEL_CLASSES``), the optimizer groups (one optimizer per network of a GAN, each loss picking
    the one it trains), the checks on the loss, and that each built model recorded where every
    canonical layer is (``model.layer_paths``, :mod:`spec.layer_paths`). A framework implements the
    native part: making its model (:meth:`_new_model`), loading and freezing canonical parameters,
    and one native optimizer (:meth:`_native_optimizer`)."""

    name: ClassVar[str]
    trains_compiled: ClassVar[bool]
    model_classes: ClassVar[Mapping[type[ModelSpec], Callable[..., Any]]]
    # The call every native layer's construction passes through: (owner, method name, index of the new
    # layer among the call's arguments); `make site` wraps it to see which line made each layer.
    layer_constructor: ClassVar[tuple[type, str, int]]

    @property
    def framework(self) -> str:
        return framework_of(self.name)

    def model_class(self, spec: ModelSpec) -> Callable[..., M]:
        """The native class that builds ``spec``, or :class:`SpecError` naming the kinds this backend builds."""
        try:
            return self.model_classes[type(spec)]
        except KeyError:
            kinds = sorted(cls.__name__ for cls in self.model_classes)
            raise SpecError("spec", type(spec).__name__, f"a spec the {self.name} backend builds: {kinds}") from None

    def build(
        self, spec: ModelSpec, params: Mapping[str, np.ndarray], *, seed: int = 0, precision: Precision = "float32"
    ) -> M:
        if precision not in PRECISIONS:
            raise SpecError("precision", precision, PRECISIONS)
        with self._precision_scope(precision):
            model = self._new_model(self.model_class(spec), spec, seed, precision)
            model.precision = precision
            check_layer_paths(spec, model.layer_paths, self.name)
            self._load(model, params)
            self._freeze(model)
            return self._ready(model, seed)

    def release_compiled(self) -> None:
        """Nothing to free by default: a compiled program dies with its model (torch)."""

    def loss_and_grads(
        self, model: M, x: np.ndarray, targets: np.ndarray, loss: str
    ) -> tuple[float, dict[str, np.ndarray]]:
        check_model_loss(model.spec, loss)
        check_targets(model.spec, targets, loss)
        if model.precision != "mixed_float16":
            return self._loss_and_grads(model, x, targets, loss, 1.0)
        # float16 gradients through loss scaling, the scale backed off while they overflow, as a
        # dynamic loss scale does over skipped steps (each try draws new dropout masks)
        scale = LOSS_SCALE.initial
        while True:
            value, grads = self._loss_and_grads(model, x, targets, loss, scale)
            if scale <= 1.0 or all(np.isfinite(g).all() for g in grads.values()):
                return value, grads
            scale /= LOSS_SCALE.factor

    def train_step(
        self,
        model: M,
        optimizer: Any,
        x: np.ndarray,
        targets: np.ndarray,
        loss: str,
        *,
        compiled: bool = False,
    ) -> float:
        check_model_loss(model.spec, loss)
        check_targets(model.spec, targets, loss)
        return self._train_step(model, optimizer, x, targets, loss, compiled)

    def make_optimizer(self, model: M, opt: OptimizerSpec, *, ported: bool = False) -> Any:
        groups = optimizer_groups(model.spec)
        if groups is None:
            return self._native_optimizer(model, opt, None, ported)
        return self._optimizer_group({part: self._native_optimizer(model, opt, part, ported) for part in groups})

    @staticmethod
    def optimizer_for_loss(optimizer: Any, loss: str) -> Any:
        """The optimizer a step with ``loss`` uses: a GAN's loss picks its network's."""
        return optimizer[GAN_LOSS_TRAINS[loss]] if isinstance(optimizer, Mapping) else optimizer

    @staticmethod
    def optimizer_for_grads(model: M, optimizer: Any, grads: Mapping[str, np.ndarray]) -> tuple[str | None, Any]:
        """The part (``None`` for a model with one optimizer) that canonical ``grads`` cover, and its optimizer."""
        if not isinstance(optimizer, Mapping):
            return None, optimizer
        part = group_of(model.spec, grads)
        return part, optimizer[part]

    @abstractmethod
    def _new_model(self, model_class: Callable[..., M], spec: ModelSpec, seed: int, precision: Precision) -> M:
        """A native model of ``model_class`` for ``spec``, its variables created in ``precision`` (any values)."""

    def _precision_scope(self, precision: Precision) -> contextlib.AbstractContextManager[object]:
        """What must be in force while a model of ``precision`` is built, for a framework whose
        precision is a global setting."""
        return contextlib.nullcontext()

    @abstractmethod
    def _load(self, model: M, params: Mapping[str, np.ndarray]) -> None: ...

    @abstractmethod
    def _freeze(self, model: M) -> None:
        """Leave the spec's frozen layers out of training."""

    def _ready(self, model: M, seed: int) -> M:
        """The built model after loading, for a framework with more to set up (random streams)."""
        return model

    @abstractmethod
    def _loss_and_grads(
        self, model: M, x: np.ndarray, targets: np.ndarray, loss: str, scale: float
    ) -> tuple[float, dict[str, np.ndarray]]:
        """:meth:`Backend.loss_and_grads` once the loss and the targets are checked against the spec:
        the loss and the gradients of the loss times ``scale`` (a power of two: float16 loss
        scaling), divided by ``scale``."""

    @abstractmethod
    def _train_step(
        self, model: M, optimizer: Any, x: np.ndarray, targets: np.ndarray, loss: str, compiled: bool
    ) -> float:
        """:meth:`Backend.train_step` once the loss and the targets are checked against the spec."""

    @abstractmethod
    def _native_optimizer(self, model: M, opt: OptimizerSpec, part: str | None, ported: bool) -> Any:
        """The native optimizer following ``opt`` for the trainable tensors of ``part`` (a GAN's
        network, by name: :func:`spec.params.optimizer_groups`), or of the whole model (``None``);
        with ``ported``, a ported rule where the native optimizers cannot express ``opt``."""

    def _optimizer_group(self, optimizers: dict[str, Any]) -> Any:
        """A GAN's optimizers, one per network by name, in the container the framework needs."""
        return optimizers


_CACHE = "_triptych_cache"
T = TypeVar("T")


def native_cache(owner: object) -> dict[str, Any]:
    """What a backend keeps beside a native model or optimizer it made — compiled functions, split
    state — in that object's own ``__dict__``: past the framework's attribute tracking (torch would
    register a compiled module as a submodule, Keras track it, NNX make it graph state), and living
    exactly as long as the object (a weak-keyed table would keep it forever: the compiled functions
    hold the model)."""
    return owner.__dict__.setdefault(_CACHE, {})


def drop_native_cache(owner: object) -> dict[str, Any]:
    """Take ``owner``'s :func:`native_cache` off it (empty if it had none) and return it. An NNX
    module keeps every attribute in the graph definition that ``nnx.split`` returns, so the JAX
    backend drops the cache before each split."""
    return owner.__dict__.pop(_CACHE, {})


def cached(owner: object, key: str, make: Callable[[], T]) -> T:
    """``make()``, made once per ``owner`` and ``key`` and kept in its :func:`native_cache`."""
    cache = native_cache(owner)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def load_backend(name: str) -> Backend:
    """Import ``impls.<framework>`` for executor ``name`` and return its backend; raises
    :class:`BackendUnavailable` with the reason when the framework or its engine is missing or fails
    to import, or when ``name`` needs another Keras backend than this process has."""
    framework = framework_of(name)
    if name in KERAS_ENGINES:
        choose_keras_engine(name)
    try:
        module = importlib.import_module(f"impls.{framework}")
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} is not available: {exc}") from exc
    backend: Backend = module.BACKEND
    if backend.name != name:  # KERAS_BACKEND changed under a loaded Keras
        raise BackendUnavailable(f"backend {name!r} is not available: this process runs {backend.name}")
    return backend


def available_backends(names: tuple[str, ...] = BACKEND_NAMES) -> dict[str, Backend | BackendUnavailable]:
    """Each of ``names`` mapped to its backend, or to the reason it is unavailable."""
    found: dict[str, Backend | BackendUnavailable] = {}
    for name in names:
        try:
            found[name] = load_backend(name)
        except BackendUnavailable as exc:
            found[name] = exc
    return found
