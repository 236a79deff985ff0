"""``reset``: re-initialise the last ``layers`` weight layers (1 = the head) every ``interval``
agent steps (Nikishin et al. 2022, "The Primacy Bias in Deep RL"). Their optimizer moments are
zeroed; the target network is left to catch up at its next sync."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.ranges import ranged
from interventions import register
from interventions.schedule import Scheduled
from nets.networks import reinitialised
from nets.surgery import weight_layers, zero_moments


@dataclass
class ResetConfig:
    interval: int = ranged(2_000_000, ge=1)
    """Agent steps between resets."""
    layers: int = ranged(1, ge=1)
    """How many weight layers, counted from the output, to re-initialise (1 = head only)."""
    at_shift: bool = False
    """Reset at every task switch instead of every ``interval`` agent steps (task sequences only)."""


@register("reset")
class Reset(Scheduled):
    Config = ResetConfig

    @torch.no_grad()
    def apply(self, agent) -> dict:
        for _, layer in weight_layers(agent.network)[-self.cfg.layers:]:
            fresh = reinitialised(layer)
            for param, new in zip(layer.parameters(), fresh.parameters()):
                param.copy_(new)
                zero_moments(agent.optimizer, param)
        return {"reset_layers": torch.tensor(float(self.cfg.layers))}
