"""The spec's optimizers (:mod:`spec.optimizers`) as Optax gradient transformations."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jmp
import optax

from impls.jax.schedules import make_schedule
from spec.errors import UnsupportedOption
from spec.optimizers import OptimizerSpec
from spec.precision import LossScale


def make_optimizer(opt: OptimizerSpec) -> optax.GradientTransformation:
    """A native Optax transformation configured to follow the spec exactly, behind
    ``optax.clip_by_global_norm`` when the spec clips."""
    tx = _make(opt)
    return tx if opt.clip_global_norm is None else optax.chain(optax.clip_by_global_norm(opt.clip_global_norm), tx)


def _make(opt: OptimizerSpec) -> optax.GradientTransformation:
    lr = make_schedule(opt.schedule) if opt.schedule else opt.learning_rate
    if opt.kind == "rmsprop" and opt.momentum and opt.learning_rate_changes():
        assert opt.schedule is not None  # only a schedule changes the rate
        raise UnsupportedOption(
            "jax",
            "optimizer.learning_rate",
            opt.schedule.kind,
            "optax.rmsprop applies its momentum trace after scaling by the learning rate, so with momentum "
            "a changing rate is applied differently",
        )
    match opt.kind:
        case "sgd":
            return optax.sgd(lr, momentum=opt.momentum or None, nesterov=opt.nesterov)
        case "adam" | "adamw":
            # Optax adds eps to √v̂ (the corrected form). For ε-hat, eps becomes a schedule of the step:
            # ε/√(1−β2ᵗ), injected with optax.inject_hyperparams.
            epsilon, beta2 = opt.epsilon, opt.beta2
            assert epsilon is not None and beta2 is not None  # OptimizerSpec requires both for adam and adamw
            eps: float | optax.Schedule = epsilon
            if opt.epsilon_placement == "uncorrected":
                eps = lambda count: epsilon / jnp.sqrt(1.0 - beta2 ** (count + 1.0))  # noqa: E731
            factory = optax.inject_hyperparams(optax.adam if opt.kind == "adam" else optax.adamw)
            extra = {"weight_decay": opt.weight_decay} if opt.kind == "adamw" else {}
            return factory(learning_rate=lr, b1=opt.beta1, b2=opt.beta2, eps=eps, eps_root=0.0, **extra)
        case "rmsprop":
            return optax.rmsprop(
                lr,
                decay=opt.rho,
                eps=opt.epsilon,
                initial_scale=0.0,
                eps_in_sqrt=opt.epsilon_placement == "inside_sqrt",
                centered=opt.centered,
                momentum=opt.momentum or None,
            )
        case "adagrad":
            if opt.epsilon_placement != "inside_sqrt":
                raise UnsupportedOption(
                    "jax",
                    "optimizer.epsilon_placement",
                    opt.epsilon_placement,
                    "optax.adagrad computes rsqrt(acc + eps) (optax/_src/transform.py, scale_by_rss)",
                    native="inside_sqrt",
                )
            return optax.adagrad(lr, initial_accumulator_value=opt.initial_accumulator, eps=opt.epsilon)
    raise ValueError(f"no Optax optimizer for {opt.kind!r}")


class LossScaleState(NamedTuple):
    loss_scale: jmp.DynamicLossScale
    inner: optax.OptState


def loss_scaled(inner: optax.GradientTransformation, settings: LossScale) -> optax.GradientTransformation:
    """jmp's dynamic loss scaling as an Optax transformation, as Keras's ``LossScaleOptimizer``
    wraps an optimizer (Optax has none of its own): it takes the gradients of the loss times
    ``loss_scale`` (:func:`current_loss_scale`), unscales them, and steps ``inner`` if they are
    finite — else leaves the parameters and ``inner``'s state as they were — then adjusts the scale."""

    def init(params: optax.Params) -> LossScaleState:
        scale = jmp.DynamicLossScale(
            jnp.float32(settings.initial), period=settings.growth_interval, factor=int(settings.factor)
        )
        return LossScaleState(scale, inner.init(params))

    def update(
        grads: optax.Updates, state: LossScaleState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, LossScaleState]:
        grads = state.loss_scale.unscale(grads)
        finite = jmp.all_finite(grads)
        updates, inner_state = inner.update(grads, state.inner, params)
        skipped = jax.tree.map(jnp.zeros_like, updates)
        updates = jmp.select_tree(finite, updates, skipped)
        inner_state = jmp.select_tree(finite, inner_state, state.inner)
        return updates, LossScaleState(state.loss_scale.adjust(finite), inner_state)

    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]  # typed init/update
