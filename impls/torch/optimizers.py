"""The spec's optimizers (:mod:`spec.optimizers`) as ``torch.optim`` optimizers."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection

import torch
from torch import nn

from impls.torch import weights
from impls.torch.models import SpecModel
from impls.torch.schedules import make_scheduler
from spec.errors import UnsupportedOption
from spec.optimizers import PORTED_HINT, OptimizerSpec


def make_optimizer(
    model: SpecModel, opt: OptimizerSpec, names: Collection[str] | None = None, *, ported: bool = False
) -> torch.optim.Optimizer:
    """A native optimizer over the model's parameters (those of canonical ``names``, if given),
    configured to follow the spec exactly. A learning-rate schedule is a native ``lr_scheduler``
    stepped by a post-step hook, so every ``optimizer.step()`` advances it; gradient clipping is
    ``clip_grad_norm_`` in a pre-step hook. With ``ported``, RMSprop and Adagrad with ε inside the
    square root (Keras's and Optax's rule, which torch's optimizers lack) run as
    :class:`EpsilonInsideRoot`."""
    params = weights.trained_parameters(model, names)
    inside = opt.kind in ("rmsprop", "adagrad") and opt.epsilon_placement == "inside_sqrt"
    optimizer = EpsilonInsideRoot(params, opt) if ported and inside else _make(params, opt)
    max_norm = opt.clip_global_norm
    if max_norm is not None:

        def clip(*_: object) -> None:
            nn.utils.clip_grad_norm_(params, max_norm)

        optimizer.register_step_pre_hook(clip)
    if opt.schedule is not None:
        scheduler = make_scheduler(optimizer, opt.schedule)
        optimizer.register_step_post_hook(lambda *_: scheduler.step())
    return optimizer


def _make(params: list[torch.Tensor], opt: OptimizerSpec) -> torch.optim.Optimizer:
    lr = opt.base_learning_rate
    match opt.kind:
        case "sgd":
            return torch.optim.SGD(
                params,
                lr=lr,
                momentum=opt.momentum,
                dampening=0.0,
                nesterov=opt.nesterov,
                weight_decay=0.0,
            )
        case "adam" | "adamw":
            # OptimizerSpec requires each field its optimizer uses (here and below)
            assert opt.beta1 is not None and opt.beta2 is not None and opt.epsilon is not None
            cls = torch.optim.Adam if opt.kind == "adam" else torch.optim.AdamW
            optimizer = cls(
                params,
                lr=lr,
                betas=(opt.beta1, opt.beta2),
                eps=opt.epsilon,
                weight_decay=opt.weight_decay,
            )
            if opt.epsilon_placement == "uncorrected":
                # torch adds eps to √v̂ = √v/√(1−β2ᵗ); eps_t = ε/√(1−β2ᵗ) turns that into (√v + ε)/√(1−β2ᵗ),
                # the ε-hat form. Set before every step with torch's own step hook.
                optimizer.register_step_pre_hook(_epsilon_hat_hook(opt.epsilon, opt.beta2))
            return optimizer
        case "rmsprop":
            _require_outside_sqrt(opt, "torch.optim.RMSprop computes sqrt(v) + eps (torch/optim/rmsprop.py)")
            assert opt.rho is not None and opt.epsilon is not None
            return torch.optim.RMSprop(
                params,
                lr=lr,
                alpha=opt.rho,
                eps=opt.epsilon,
                momentum=opt.momentum,
                centered=opt.centered,
                weight_decay=0.0,
            )
        case "adagrad":
            _require_outside_sqrt(opt, "torch.optim.Adagrad computes sqrt(acc) + eps (torch/optim/adagrad.py)")
            assert opt.initial_accumulator is not None and opt.epsilon is not None
            return torch.optim.Adagrad(
                params,
                lr=lr,
                lr_decay=0.0,
                weight_decay=0.0,
                initial_accumulator_value=opt.initial_accumulator,
                eps=opt.epsilon,
            )
    raise ValueError(f"no torch optimizer for {opt.kind!r}")


def _require_outside_sqrt(opt: OptimizerSpec, why: str) -> None:
    if opt.epsilon_placement != "outside_sqrt":
        why += f"; {PORTED_HINT}"
        raise UnsupportedOption(
            "torch", "optimizer.epsilon_placement", opt.epsilon_placement, why, native="outside_sqrt"
        )


class EpsilonInsideRoot(torch.optim.Optimizer):
    """RMSprop (with its momentum and centred variants) and Adagrad dividing by √(v + ε), the rule of
    Keras and Optax, where ``torch.optim`` divides by √v + ε: triptych's port, for a model ported
    from Keras or JAX whose training continues in torch (``make_optimizer(..., ported=True)``). The
    learning rate stays outside the momentum buffer, as in the spec (:mod:`spec.optimizers`)."""

    def __init__(self, params: list[torch.Tensor], opt: OptimizerSpec) -> None:
        assert opt.epsilon is not None  # both kinds require it (OptimizerSpec)
        defaults = {"lr": opt.base_learning_rate, "eps": opt.epsilon}
        super().__init__(params, defaults)
        self.opt = opt

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        opt = self.opt
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad, state = param.grad, self.state[param]
                if not state:
                    state["second"] = torch.full_like(param, opt.initial_accumulator or 0.0)
                    state["mean"], state["buffer"] = torch.zeros_like(param), torch.zeros_like(param)
                second = state["second"]
                if opt.kind == "adagrad":
                    second.addcmul_(grad, grad)
                else:
                    assert opt.rho is not None  # required for RMSprop (OptimizerSpec)
                    second.mul_(opt.rho).addcmul_(grad, grad, value=1.0 - opt.rho)
                    if opt.centered:
                        state["mean"].mul_(opt.rho).add_(grad, alpha=1.0 - opt.rho)
                        second = second - state["mean"].square()
                scaled = grad / (second + group["eps"]).sqrt()
                if opt.momentum:
                    scaled = state["buffer"].mul_(opt.momentum).add_(scaled)
                param.add_(scaled, alpha=-group["lr"])


def _epsilon_hat_hook(epsilon: float, beta2: float) -> Callable[[torch.optim.Optimizer, object, object], None]:
    def hook(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        for group in optimizer.param_groups:
            state = optimizer.state[group["params"][0]]
            step = int(state["step"]) + 1 if "step" in state else 1
            group["eps"] = epsilon / math.sqrt(1.0 - beta2**step)

    return hook
