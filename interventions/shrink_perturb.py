"""``shrink_perturb``: theta <- alpha * theta + sigma * theta_fresh every ``interval`` agent steps
(Ash & Adams 2020), theta_fresh a fresh initialisation of the same network. Every weight moves,
so every optimizer moment is zeroed."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.networks import reinitialised
from interventions import register
from interventions.surgery import Every, zero_moments


@dataclass
class ShrinkPerturbConfig:
    interval: int = 1_000_000
    """Agent steps between applications."""
    alpha: float = 0.8
    """Shrink factor of the current weights."""
    sigma: float = 0.2
    """Scale of the fresh initialisation added."""


@register("shrink_perturb")
class ShrinkPerturb:
    Config = ShrinkPerturbConfig

    def __init__(self, cfg: ShrinkPerturbConfig):
        self.cfg, self.every = cfg, Every(cfg.interval)

    @torch.no_grad()
    def after_update(self, agent, step: int) -> dict:
        if not self.every(step):
            return {}
        fresh = reinitialised(agent.network)
        for param, new in zip(agent.network.parameters(), fresh.parameters()):
            param.mul_(self.cfg.alpha).add_(new, alpha=self.cfg.sigma)
            zero_moments(agent.optimizer, param)
        return {"shrink_perturb_applied": torch.tensor(1.0)}

    def state_dict(self) -> dict:
        return {"last": self.every.last}

    def load_state_dict(self, state: dict) -> None:
        self.every.last = state["last"]
