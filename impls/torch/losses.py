"""The spec's losses (definitions in :mod:`spec.losses`) with ``torch.nn.functional``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from impls.torch.models import output_activation


def compute_loss(loss: str, logits: torch.Tensor, targets: torch.Tensor, output_kind: str) -> torch.Tensor:
    match loss:
        case "sparse_categorical_crossentropy":
            return F.cross_entropy(logits, targets)  # integer targets, mean over the batch
        case "categorical_crossentropy":
            return F.cross_entropy(logits, targets)  # probability targets, mean over the batch
        case "binary_crossentropy":
            return F.binary_cross_entropy_with_logits(logits, targets)  # mean over every element
        case "mse":
            return F.mse_loss(output_activation(logits, output_kind), targets)
    raise ValueError(f"no torch loss for {loss!r}")
