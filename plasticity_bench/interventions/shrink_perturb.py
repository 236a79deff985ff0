"""``shrink_perturb``: theta <- alpha * theta + sigma * theta_fresh every ``interval`` agent steps
(Ash & Adams 2020), theta_fresh a fresh initialisation of the same network. Every weight moves,
so every optimizer moment is zeroed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import register
from plasticity_bench.interventions.schedule import Scheduled
from plasticity_bench.nets.networks import reinitialised
from plasticity_bench.nets.surgery import zero_moments


@dataclass
class ShrinkPerturbConfig:
    interval: int = ranged(1_000_000, ge=1)
    """Agent steps between applications."""
    alpha: float = ranged(0.8, ge=0)
    """Shrink factor of the current weights."""
    sigma: float = ranged(0.2, ge=0)
    """Scale of the fresh initialisation added."""
    at_shift: bool = False
    """Apply at every task switch instead of every ``interval`` agent steps (task sequences only)."""


@register("shrink_perturb")
class ShrinkPerturb(Scheduled):
    Config = ShrinkPerturbConfig

    @torch.no_grad()
    def apply(self, agent) -> dict:
        fresh = reinitialised(agent.network)
        for param, new in zip(agent.network.parameters(), fresh.parameters()):
            param.mul_(self.cfg.alpha).add_(new, alpha=self.cfg.sigma)
            zero_moments(agent.optimizer, param)
        return {"shrink_perturb_applied": torch.tensor(1.0)}
