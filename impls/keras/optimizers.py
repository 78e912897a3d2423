"""The spec's optimizers (:mod:`spec.optimizers`) as ``keras.optimizers``."""

from __future__ import annotations

import math

import keras

from impls.keras.schedules import make_schedule
from spec.errors import UnsupportedOption
from spec.optimizers import OptimizerSpec


def make_optimizer(opt: OptimizerSpec) -> keras.optimizers.Optimizer:
    """A native optimizer configured to follow the spec exactly.

    Keras adds weight decay to *every* optimizer as a decoupled step (θ ← θ − lr·wd·θ); only AdamW
    uses it here, and the others get ``weight_decay=None``.
    """
    lr = make_schedule(opt.schedule) if opt.schedule else opt.learning_rate
    if opt.momentum and opt.learning_rate_changes():
        assert opt.schedule is not None  # only a schedule changes the rate
        raise UnsupportedOption(
            "keras",
            "optimizer.learning_rate",
            opt.schedule.kind,
            f"keras.optimizers.{'SGD' if opt.kind == 'sgd' else 'RMSprop'} keeps the learning rate inside its "
            "momentum buffer, so with momentum a changing rate is applied differently",
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
            "keras", "optimizer.epsilon_placement", opt.epsilon_placement, why, native="inside_sqrt"
        )
