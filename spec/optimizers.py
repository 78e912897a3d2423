"""Optimizer specs: every hyper-parameter explicit, including where epsilon enters the update.

The frameworks disagree on defaults *and* on formulas; the spec pins both. The update rules (the
judge implements exactly these, in :mod:`spec.reference`), with t the 1-based step and g the gradient:

* ``sgd``: with momentum μ, ``b ← μ·b + g`` (b₀ = 0, no dampening); the step is ``b``, or
  ``g + μ·b`` with ``nesterov``; ``θ ← θ − lr·step``. Without momentum ``θ ← θ − lr·g``.
* ``adam`` / ``adamw``: ``m ← β1·m + (1−β1)·g``, ``v ← β2·v + (1−β2)·g²``;
  ``epsilon_placement="corrected"`` (Kingma & Ba, Algorithm 1; torch and Optax):
  ``θ ← θ − lr·m̂ / (√v̂ + ε)`` with ``m̂ = m/(1−β1ᵗ)``, ``v̂ = v/(1−β2ᵗ)``;
  ``"uncorrected"`` (the paper's "ε-hat" form; Keras): ``θ ← θ − lr·√(1−β2ᵗ)/(1−β1ᵗ)·m / (√v + ε)``.
  ``adamw`` first applies decoupled weight decay ``θ ← θ − lr·wd·θ`` (Loshchilov & Hutter; the
  product lr·wd is what torch, Keras and Optax all use).
* ``rmsprop``: ``v ← ρ·v + (1−ρ)·g²``; centered also tracks ``ḡ ← ρ·ḡ + (1−ρ)·g`` and uses
  ``v − ḡ²``; the denominator is ``√(v + ε)`` (``"inside_sqrt"``: Keras, Optax default) or
  ``√v + ε`` (``"outside_sqrt"``: torch); with momentum μ, ``b ← μ·b + g/denom``, ``θ ← θ − lr·b``,
  else ``θ ← θ − lr·g/denom``.
* ``adagrad``: ``a ← a + g²`` from ``a₀ = initial_accumulator``; ``θ ← θ − lr·g/denom`` with the same
  two epsilon placements (torch: outside; Keras and Optax: inside).

With ``clip_global_norm`` c, every step first rescales all gradients together:
``g ← g·min(1, c / ‖g‖)`` with ‖g‖ the norm over every tensor (torch's ``clip_grad_norm_`` adds 1e-6
to ‖g‖, a relative change of 1e-6/‖g‖ in the clipped step, far below the test tolerance for the
gradient norms used here; Keras's ``global_clipnorm`` and ``optax.clip_by_global_norm`` add nothing).
Per-tensor clipping (Keras's ``clipnorm``) is a different rule and is not offered.

Accumulators start at zero unless stated. ``learning_rate`` is a constant or a
:class:`spec.schedules.ScheduleSpec`; the update at step t (1-based) uses the schedule's value at t − 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec.errors import SpecError
from spec.schedules import ScheduleSpec
from spec.validation import check_number

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
ADAM_EPSILON_PLACEMENTS = ("corrected", "uncorrected")
SQRT_EPSILON_PLACEMENTS = ("inside_sqrt", "outside_sqrt")

# Which fields each optimizer uses; a field set for an optimizer that ignores it is an error, so a
# spec never carries a value that silently does nothing.
_FIELDS = {
    "sgd": {"momentum", "nesterov"},
    "adam": {"beta1", "beta2", "epsilon", "epsilon_placement"},
    "adamw": {"beta1", "beta2", "epsilon", "epsilon_placement", "weight_decay"},
    "rmsprop": {"rho", "epsilon", "epsilon_placement", "momentum", "centered"},
    "adagrad": {"initial_accumulator", "epsilon", "epsilon_placement"},
}
_UNSET = {
    "momentum": 0.0,
    "nesterov": False,
    "beta1": None,
    "beta2": None,
    "epsilon": None,
    "epsilon_placement": None,
    "weight_decay": 0.0,
    "rho": None,
    "centered": False,
    "initial_accumulator": None,
}
# What an UnsupportedOption for an optimizer rule says a user can do instead (spec.backend.Backend.make_optimizer).
PORTED_HINT = "make_optimizer(..., ported=True) runs triptych's port of the rule"
_REQUIRED = {"beta1", "beta2", "epsilon", "epsilon_placement", "rho", "initial_accumulator"}


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer with all its hyper-parameters; see the module docstring for the update rules."""

    kind: str
    learning_rate: float | ScheduleSpec
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float | None = None
    beta2: float | None = None
    epsilon: float | None = None
    epsilon_placement: str | None = None
    weight_decay: float = 0.0
    rho: float | None = None
    centered: bool = False
    initial_accumulator: float | None = None
    clip_global_norm: float | None = None  # any optimizer

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise SpecError("optimizer", self.kind, OPTIMIZERS)
        used = _FIELDS[self.kind]
        for name, unset in _UNSET.items():
            value = getattr(self, name)
            if name not in used and value != unset:
                raise SpecError(f"optimizer.{name}", value, f"unset for {self.kind} (it does not use it)")
            if name in used and name in _REQUIRED and value is None:
                raise SpecError(f"optimizer.{name}", None, f"an explicit value for {self.kind}")
        if not isinstance(self.learning_rate, ScheduleSpec):
            check_number("optimizer.learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_number("optimizer.momentum", self.momentum, low=0.0, high=1.0)
        for name in ("beta1", "beta2", "rho"):
            if name in used:
                check_number(f"optimizer.{name}", getattr(self, name), low=0.0, high=1.0)
        if "epsilon" in used:
            check_number("optimizer.epsilon", self.epsilon, low=0.0, low_open=True)
        check_number("optimizer.weight_decay", self.weight_decay, low=0.0)
        if "initial_accumulator" in used:
            check_number("optimizer.initial_accumulator", self.initial_accumulator, low=0.0)
        if "epsilon_placement" in used:
            allowed = ADAM_EPSILON_PLACEMENTS if self.kind in ("adam", "adamw") else SQRT_EPSILON_PLACEMENTS
            if self.epsilon_placement not in allowed:
                raise SpecError("optimizer.epsilon_placement", self.epsilon_placement, allowed)
        if self.clip_global_norm is not None:
            check_number("optimizer.clip_global_norm", self.clip_global_norm, low=0.0, low_open=True)
        if self.nesterov and self.momentum == 0:
            raise SpecError("optimizer.nesterov", True, "True only with momentum > 0")
        for flag in ("nesterov", "centered"):
            if not isinstance(getattr(self, flag), bool):
                raise SpecError(f"optimizer.{flag}", getattr(self, flag), (True, False))

    @property
    def schedule(self) -> ScheduleSpec | None:
        """The learning-rate schedule, or None for a constant rate."""
        return self.learning_rate if isinstance(self.learning_rate, ScheduleSpec) else None

    @property
    def constant_rate(self) -> float:
        """The learning rate of an optimizer without a schedule."""
        if isinstance(self.learning_rate, ScheduleSpec):
            raise SpecError("optimizer.learning_rate", self.learning_rate, "a constant rate (no schedule)")
        return self.learning_rate

    @property
    def base_learning_rate(self) -> float:
        schedule = self.schedule
        return schedule.learning_rate if schedule is not None else self.constant_rate

    def learning_rate_changes(self) -> bool:
        """Whether the rate varies from step to step (a constant schedule does not)."""
        return self.schedule is not None and self.schedule.kind != "constant"

    def describe(self) -> str:
        """A short readable form, e.g. ``adam(lr=0.001, β=(0.9, 0.999), ε=1e-08 corrected)``."""
        lr = self.learning_rate
        parts = [f"lr={lr.kind} from {lr.learning_rate:g}" if isinstance(lr, ScheduleSpec) else f"lr={lr:g}"]
        if self.momentum:
            parts.append(f"momentum={self.momentum:g}" + (" nesterov" if self.nesterov else ""))
        if self.beta1 is not None:
            parts.append(f"β=({self.beta1:g}, {self.beta2:g})")
        if self.rho is not None:
            parts.append(f"ρ={self.rho:g}" + (" centered" if self.centered else ""))
        if self.initial_accumulator is not None:
            parts.append(f"a₀={self.initial_accumulator:g}")
        if self.epsilon is not None:
            parts.append(f"ε={self.epsilon:g} {self.epsilon_placement}")
        if self.weight_decay:
            parts.append(f"wd={self.weight_decay:g}")
        if self.clip_global_norm is not None:
            parts.append(f"clip ‖g‖≤{self.clip_global_norm:g}")
        return f"{self.kind}({', '.join(parts)})"


# Each framework's default optimizer written out as a spec, so that "Keras's Adam" means the same
# numbers everywhere. Defaults from torch/optim/*.py, keras/src/optimizers/*.py and optax/_src/alias.py.
OPTIMIZER_ZOO: dict[str, OptimizerSpec] = {
    "sgd_momentum": OptimizerSpec("sgd", 0.01, momentum=0.9),
    "sgd_nesterov": OptimizerSpec("sgd", 0.01, momentum=0.9, nesterov=True),
    "adam_torch_default": OptimizerSpec(
        "adam", 1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, epsilon_placement="corrected"
    ),
    "adam_keras_default": OptimizerSpec(
        "adam", 1e-3, beta1=0.9, beta2=0.999, epsilon=1e-7, epsilon_placement="uncorrected"
    ),
    "adamw_torch_default": OptimizerSpec(
        "adamw", 1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, epsilon_placement="corrected", weight_decay=0.01
    ),
    "rmsprop_keras_default": OptimizerSpec("rmsprop", 1e-3, rho=0.9, epsilon=1e-7, epsilon_placement="inside_sqrt"),
    "rmsprop_torch_default": OptimizerSpec("rmsprop", 1e-2, rho=0.99, epsilon=1e-8, epsilon_placement="outside_sqrt"),
    "adagrad_keras_default": OptimizerSpec(
        "adagrad", 1e-3, initial_accumulator=0.1, epsilon=1e-7, epsilon_placement="inside_sqrt"
    ),
    "adagrad_torch_default": OptimizerSpec(
        "adagrad", 1e-2, initial_accumulator=0.0, epsilon=1e-10, epsilon_placement="outside_sqrt"
    ),
}
