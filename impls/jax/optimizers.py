"""The spec's optimizers (:mod:`spec.optimizers`) as Optax gradient transformations."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jmp
import optax

from impls.jax.schedules import make_schedule
from spec.errors import UnsupportedOption
from spec.optimizers import PORTED_HINT, OptimizerSpec
from spec.precision import LossScale


def make_optimizer(opt: OptimizerSpec, *, ported: bool = False) -> optax.GradientTransformation:
    """A native Optax transformation configured to follow the spec exactly, behind
    ``optax.clip_by_global_norm`` when the spec clips. With ``ported``, a rule Optax's aliases cannot
    express (ε outside Adagrad's root, RMSprop's momentum with a changing rate) runs as
    :func:`ported_rule`."""
    try:
        tx = _make(opt)
    except UnsupportedOption:
        if not ported:
            raise
        tx = ported_rule(opt)
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
            f"a changing rate is applied differently; {PORTED_HINT}",
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
                    f"optax.adagrad computes rsqrt(acc + eps) (optax/_src/transform.py, scale_by_rss); {PORTED_HINT}",
                    native="inside_sqrt",
                )
            return optax.adagrad(lr, initial_accumulator_value=opt.initial_accumulator, eps=opt.epsilon)
    raise ValueError(f"no Optax optimizer for {opt.kind!r}")


def ported_rule(opt: OptimizerSpec) -> optax.GradientTransformation:
    """RMSprop and Adagrad exactly as the spec writes them (:mod:`spec.optimizers`), chained from
    Optax's parts: the gradient scaled by its root (ε inside or outside it), then the momentum trace,
    then the learning rate — outside the buffer, where ``optax.rmsprop`` puts it inside. triptych's
    port, for a model ported from torch or Keras whose training continues in JAX."""
    assert opt.epsilon is not None  # required for RMSprop and Adagrad (OptimizerSpec)
    inside = opt.epsilon_placement == "inside_sqrt"
    match opt.kind:
        case "rmsprop":
            assert opt.rho is not None  # required for RMSprop (OptimizerSpec)
            by_root = optax.scale_by_stddev if opt.centered else optax.scale_by_rms
            scale = by_root(decay=opt.rho, eps=opt.epsilon, initial_scale=0.0, eps_in_sqrt=inside)
        case "adagrad":
            assert opt.initial_accumulator is not None  # required for Adagrad (OptimizerSpec)
            scale = scale_by_sum_of_squares(opt.initial_accumulator, opt.epsilon, inside)
        case _:
            raise ValueError(f"ported_rule ports RMSprop and Adagrad, not {opt.kind!r}")
    lr = make_schedule(opt.schedule) if opt.schedule else opt.learning_rate
    momentum = optax.trace(decay=opt.momentum) if opt.momentum else optax.identity()
    return optax.chain(scale, momentum, optax.scale_by_learning_rate(lr))


class SumOfSquaresState(NamedTuple):
    sum_of_squares: optax.Updates


def scale_by_sum_of_squares(initial: float, eps: float, eps_in_sqrt: bool) -> optax.GradientTransformation:
    """Adagrad's scaling ``g / √(a + ε)`` or ``g / (√a + ε)`` with ``a ← a + g²`` from ``initial``:
    ``optax.scale_by_rss`` has the first form only (and returns 0 where ``a`` is 0)."""

    def init(params: optax.Params) -> SumOfSquaresState:
        return SumOfSquaresState(jax.tree.map(lambda p: jnp.full_like(p, initial), params))

    def update(
        updates: optax.Updates, state: SumOfSquaresState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, SumOfSquaresState]:
        sums = jax.tree.map(lambda a, g: a + jnp.square(g), state.sum_of_squares, updates)
        if eps_in_sqrt:
            scaled = jax.tree.map(lambda g, a: g / jnp.sqrt(a + eps), updates, sums)
        else:
            scaled = jax.tree.map(lambda g, a: g / (jnp.sqrt(a) + eps), updates, sums)
        return scaled, SumOfSquaresState(sums)

    return optax.GradientTransformation(init, update)


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
