"""``l2init``: + coef * ||theta - theta_0||^2 on the loss (Kumar et al. 2023, "regenerative"
regularisation): like L2, but towards the initial weights instead of zero."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.ranges import ranged
from interventions import register


@dataclass
class L2InitConfig:
    coef: float = ranged(1e-5, ge=0)
    """lambda in lambda * ||theta - theta_0||^2."""


@register("l2init")
class L2Init:
    Config = L2InitConfig

    def __init__(self, cfg: L2InitConfig):
        self.cfg = cfg
        self.initial: dict[str, torch.Tensor] | None = None  # outside parameters(): never trained

    def loss(self, network: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        if self.initial is None:  # the first loss comes before the first step: these are theta_0
            self.initial = {n: p.detach().clone() for n, p in network.named_parameters()}
        for n, p in network.named_parameters():  # a checkpoint loads them on the CPU
            if n in self.initial and self.initial[n].device != p.device:
                self.initial[n] = self.initial[n].to(p.device)
        terms = [(p - self.initial[n]).pow(2).sum() for n, p in network.named_parameters()
                 if p.requires_grad and n in self.initial and self.initial[n].shape == p.shape]
        return loss + self.cfg.coef * torch.stack(terms).sum()

    def state_dict(self) -> dict:
        return {"initial": self.initial}

    def load_state_dict(self, state: dict) -> None:
        self.initial = state["initial"]
