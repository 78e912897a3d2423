"""The spec's models as ``torch.nn.Module``s."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from spec.models import Activation, MLPSpec


def activation(act: Activation) -> nn.Module:
    """The torch module for a spec activation, every parameter passed explicitly."""
    match act.kind:
        case "relu":
            return nn.ReLU()
        case "tanh":
            return nn.Tanh()
        case "sigmoid":
            return nn.Sigmoid()
        case "leaky_relu":
            return nn.LeakyReLU(negative_slope=act.negative_slope)
        case "elu":
            return nn.ELU(alpha=act.alpha)
        case "gelu":
            return nn.GELU(approximate="none" if act.approximate == "exact" else "tanh")
        case "linear":
            return nn.Identity()
    raise ValueError(f"no torch module for activation {act}")


def output_activation(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The model's outputs from its logits (softmax over the last axis, sigmoid or identity)."""
    if kind == "softmax":
        return torch.softmax(logits, dim=-1)
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    return logits


class MLP(nn.Module):
    """Linear layers with an activation (and dropout) after each hidden one; ``forward`` returns logits."""

    def __init__(self, spec: MLPSpec) -> None:
        super().__init__()
        self.spec = spec
        sizes = spec.layer_sizes
        self.dense = nn.ModuleList(
            nn.Linear(fan_in, fan_out, bias=spec.use_bias) for fan_in, fan_out in pairwise(sizes)
        )
        self.activations = nn.ModuleList(activation(a) for a in spec.activations)
        self.dropout = nn.Dropout(spec.dropout)  # the identity in eval mode and at rate 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.dense, self.activations):
            x = self.dropout(act(layer(x)))
        return self.dense[-1](x)

    def l2_penalty(self) -> torch.Tensor:
        """The spec's L2 term of the training loss: ``kernel_l2 · Σ‖W‖²`` over the Linear weights."""
        return self.spec.kernel_l2 * sum(layer.weight.square().sum() for layer in self.dense)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs: logits passed through the spec's output activation."""
        return output_activation(self(x), self.spec.output_activation)
