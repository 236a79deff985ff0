"""Weight-space diagnostics: how large the parameters are and how far they moved."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def param_norm(network: nn.Module) -> float:
    return float(torch.sqrt(sum((p.double() ** 2).sum() for p in network.parameters())))


@torch.no_grad()
def dist_from_init(network: nn.Module, initial: dict[str, torch.Tensor]) -> float:
    """L2 distance to the initial weights, over the parameters that still have the same shape
    (an intervention that adds parameters, e.g. a new head, adds nothing here)."""
    squares = [
        ((p.double() - initial[name].to(p.device).double()) ** 2).sum()
        for name, p in network.named_parameters()
        if name in initial and initial[name].shape == p.shape
    ]
    return float(torch.sqrt(sum(squares))) if squares else float("nan")
