"""The spec's optimizers (:mod:`spec.optimizers`) as ``keras.optimizers``."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from impls.keras.models import EXECUTOR
from impls.keras.schedules import make_schedule
from spec.config import from_config, to_config
from spec.errors import UnsupportedOption
from spec.optimizers import PORTED_HINT, OptimizerSpec


def make_optimizer(opt: OptimizerSpec, *, ported: bool = False) -> keras.optimizers.Optimizer:
    """A native optimizer configured to follow the spec exactly.

    Keras adds weight decay to *every* optimizer as a decoupled step (θ ← θ − lr·wd·θ); only AdamW
    uses it here, and the others get ``weight_decay=None``. With ``ported``, a rule Keras's own
    optimizers cannot express (ε outside the root, a changing rate with momentum) runs as
    :class:`PortedRule`.
    """
    try:
        return _make(opt)
    except UnsupportedOption:
        if not ported:
            raise
        return PortedRule(opt)


def _make(opt: OptimizerSpec) -> keras.optimizers.Optimizer:
    lr = make_schedule(opt.schedule) if opt.schedule else opt.learning_rate
    if opt.momentum and opt.learning_rate_changes():
        assert opt.schedule is not None  # only a schedule changes the rate
        raise UnsupportedOption(
            EXECUTOR,
            "optimizer.learning_rate",
            opt.schedule.kind,
            f"keras.optimizers.{'SGD' if opt.kind == 'sgd' else 'RMSprop'} keeps the learning rate inside its "
            f"momentum buffer, so with momentum a changing rate is applied differently; {PORTED_HINT}",
        )
    match opt.kind:
        case "sgd":
            # Keras's velocity includes the learning rate (v ← μv − lr·g); at a constant rate this is
            # the spec's buffer times −lr, so the steps are equal.
            return keras.optimizers.SGD(
                learning_rate=lr, global_clipnorm=opt.clip_global_norm, momentum=opt.momentum, nesterov=opt.nesterov
            )
        case "adam" | "adamw":
            # Keras adds epsilon to the *uncorrected* √v (the paper's ε-hat). For the corrected form its
            # epsilon becomes a variable set to ε·√(1−β2ᵗ) before each step (see `before_step`).
            assert opt.epsilon is not None and opt.beta2 is not None  # required for Adam (OptimizerSpec)
            epsilon = (
                opt.epsilon
                if opt.epsilon_placement == "uncorrected"
                else keras.Variable(opt.epsilon * math.sqrt(1 - opt.beta2), trainable=False, name="epsilon_hat")
            )
            if opt.kind == "adam":
                return keras.optimizers.Adam(
                    learning_rate=lr,
                    global_clipnorm=opt.clip_global_norm,
                    beta_1=opt.beta1,
                    beta_2=opt.beta2,
                    epsilon=epsilon,
                )
            return keras.optimizers.AdamW(
                learning_rate=lr,
                global_clipnorm=opt.clip_global_norm,
                beta_1=opt.beta1,
                beta_2=opt.beta2,
                epsilon=epsilon,
                weight_decay=opt.weight_decay,
            )
        case "rmsprop":
            _require_inside_sqrt(
                opt, "keras.optimizers.RMSprop computes sqrt(v + epsilon) (keras/src/optimizers/rmsprop.py)"
            )
            return keras.optimizers.RMSprop(
                learning_rate=lr,
                global_clipnorm=opt.clip_global_norm,
                rho=opt.rho,
                momentum=opt.momentum,
                epsilon=opt.epsilon,
                centered=opt.centered,
            )
        case "adagrad":
            _require_inside_sqrt(
                opt, "keras.optimizers.Adagrad computes sqrt(acc + epsilon) (keras/src/optimizers/adagrad.py)"
            )
            return keras.optimizers.Adagrad(
                learning_rate=lr,
                global_clipnorm=opt.clip_global_norm,
                initial_accumulator_value=opt.initial_accumulator,
                epsilon=opt.epsilon,
            )
    raise ValueError(f"no Keras optimizer for {opt.kind!r}")


def before_step(optimizer: keras.optimizers.Optimizer, opt: OptimizerSpec) -> None:
    """Per-step hyper-parameters: the ε-hat that makes Keras's Adam follow the corrected form (on a
    ``LossScaleOptimizer``'s inner optimizer, which holds ε)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if opt.kind in ("adam", "adamw") and opt.epsilon_placement == "corrected":
        assert opt.epsilon is not None and opt.beta2 is not None  # required for Adam (OptimizerSpec)
        step = int(optimizer.iterations.numpy()) + 1
        optimizer.epsilon.assign(opt.epsilon * math.sqrt(1 - opt.beta2**step))


def _require_inside_sqrt(opt: OptimizerSpec, why: str) -> None:
    if opt.epsilon_placement != "inside_sqrt":
        raise UnsupportedOption(
            EXECUTOR,
            "optimizer.epsilon_placement",
            opt.epsilon_placement,
            f"{why}; {PORTED_HINT}",
            native="inside_sqrt",
        )


@keras.saving.register_keras_serializable(package="triptych")
class PortedRule(keras.optimizers.Optimizer):
    """SGD with momentum, RMSprop (centred or not) and Adagrad exactly as the spec writes them
    (:mod:`spec.optimizers`): the learning rate outside the momentum buffer, ε inside or outside the
    root. triptych's port, for a model ported from torch or JAX whose training continues in Keras
    (``make_optimizer(..., ported=True)``): Keras's own RMSprop and Adagrad divide by √(v + ε) only,
    and its SGD and RMSprop keep the rate inside the buffer."""

    def __init__(self, opt: OptimizerSpec, **kwargs: Any) -> None:
        if opt.kind not in ("sgd", "rmsprop", "adagrad"):
            raise ValueError(f"PortedRule ports SGD, RMSprop and Adagrad, not {opt.kind!r}")
        lr = make_schedule(opt.schedule) if opt.schedule else opt.learning_rate
        super().__init__(learning_rate=lr, global_clipnorm=opt.clip_global_norm, name=f"ported_{opt.kind}", **kwargs)
        self.opt = opt

    def build(self, var_list: list[keras.Variable]) -> None:
        if self.built:
            return
        super().build(var_list)
        opt = self.opt
        accumulator = keras.initializers.Constant(opt.initial_accumulator or 0.0)
        self._second = self.add_optimizer_variables(var_list, "second_moment", accumulator) if opt.epsilon else []
        self._mean = self.add_optimizer_variables(var_list, "mean_gradient") if opt.centered else []
        self._buffer = self.add_optimizer_variables(var_list, "momentum") if opt.momentum else []

    def update_step(self, gradient: Any, variable: keras.Variable, learning_rate: Any) -> None:
        opt, index = self.opt, self._get_variable_index(variable)
        gradient = ops.cast(gradient, variable.dtype)
        step = gradient
        if opt.kind != "sgd":
            assert opt.epsilon is not None  # required for RMSprop and Adagrad (OptimizerSpec)
            second = self._second[index]
            rho = opt.rho or 0.0  # RMSprop's decay (required there); Adagrad sums instead
            if opt.kind == "adagrad":
                self.assign_add(second, ops.square(gradient))
            else:
                self.assign(second, rho * second + (1.0 - rho) * ops.square(gradient))
            denominator = second
            if opt.centered:
                mean = self._mean[index]
                self.assign(mean, rho * mean + (1.0 - rho) * gradient)
                denominator = second - ops.square(mean)
            if opt.epsilon_placement == "inside_sqrt":
                root = ops.sqrt(denominator + opt.epsilon)
            else:
                root = ops.sqrt(denominator) + opt.epsilon
            step = gradient / root
        if opt.momentum:
            buffer = self._buffer[index]
            self.assign(buffer, opt.momentum * buffer + step)
            step = step + opt.momentum * buffer if opt.nesterov else buffer
        self.assign_sub(variable, ops.cast(learning_rate, variable.dtype) * step)

    def get_config(self) -> dict[str, Any]:
        return {"opt": to_config(self.opt)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> PortedRule:
        return cls(from_config(config["opt"]))
