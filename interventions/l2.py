"""``l2``: + coef * ||theta||^2 on the loss (coupled L2, not decoupled weight decay).

Counters the parameter-norm-growth mechanism (Lyle et al. 2024)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.ranges import ranged
from interventions import register


@dataclass
class L2Config:
    coef: float = ranged(1e-5, ge=0)
    """lambda in lambda * ||theta||^2 (Lyle et al. 2024 use about 1e-5 with Adam)."""


@register("l2")
class L2:
    Config = L2Config

    def __init__(self, cfg: L2Config):
        self.cfg = cfg

    def loss(self, network: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        params = [p for p in network.parameters() if p.requires_grad]
        return loss + SquaredNorm.apply(self.cfg.coef, *params)


class SquaredNorm(torch.autograd.Function):
    """``coef * sum ||theta||^2`` as one autograd node whose backward is ``2 coef theta``, each a
    single foreach op: through autograd's generic ops (a square and a sum per parameter, a
    stack) the term cost about 15% of a MinAtar DQN update (make bench)."""

    @staticmethod
    def forward(ctx, coef: float, *params: torch.Tensor) -> torch.Tensor:
        ctx.coef = coef
        ctx.save_for_backward(*params)
        return coef * torch.stack(torch._foreach_norm(params)).square().sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, *torch._foreach_mul(ctx.saved_tensors, 2 * ctx.coef * grad))
