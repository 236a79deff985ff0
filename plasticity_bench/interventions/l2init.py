"""``l2init``: + coef * ||theta - theta_0||^2 on the loss (Kumar et al. 2023, "regenerative"
regularisation): like L2, but towards the initial weights instead of zero. Its gradient,
``2 coef (theta - theta_0)``, is added straight to the gradients after backward, as ``l2`` does."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import Intervention, register
from plasticity_bench.interventions.l2 import add_to_gradients


@dataclass
class L2InitConfig:
    coef: float = ranged(1e-5, ge=0)
    """lambda in lambda * ||theta - theta_0||^2."""


@register("l2init")
class L2Init(Intervention):
    Config = L2InitConfig

    def __init__(self, cfg: L2InitConfig):
        self.cfg = cfg
        self.initial: dict[str, torch.Tensor] | None = None  # outside parameters(): never trained

    @torch.no_grad()
    def gradients(self, network: torch.nn.Module) -> None:
        if self.initial is None:  # the first gradients come before the first step: these are theta_0
            self.initial = {n: p.detach().clone() for n, p in network.named_parameters()}
        params, initial = [], []
        for n, p in network.named_parameters():
            if not p.requires_grad or n not in self.initial:
                continue
            if self.initial[n].device != p.device:  # a checkpoint loads them on the CPU
                self.initial[n] = self.initial[n].to(p.device)
            if self.initial[n].shape == p.shape:  # (a parameter whose shape changed has no theta_0)
                params.append(p)
                initial.append(self.initial[n])
        add_to_gradients(params, torch._foreach_sub(params, initial) if params else [], 2 * self.cfg.coef)

    def restarted(self, network: torch.nn.Module) -> None:
        self.initial = None  # the next gradients, before the new agent's first step, take theta_0

    def state_dict(self) -> dict:
        return {"initial": self.initial}

    def load_state_dict(self, state: dict) -> None:
        self.initial = state["initial"]
