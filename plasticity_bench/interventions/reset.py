"""``reset``: re-initialise the last ``layers`` weight layers (1 = the head) every ``interval``
agent steps (Nikishin et al. 2022, "The Primacy Bias in Deep RL"). Their optimizer moments are
zeroed (Adam's step count is kept: nets/surgery.py); the target network is left to catch up at
its next sync.

``layers=0`` makes a fresh agent: every parameter of the network (LayerNorm included) is
re-initialised, the target network (DQN) copies it, the optimizer is built anew (no moments,
step count 0), and the agent's ``restart()`` drops what it collected with the old network (PPO:
the rollout in progress; DQN: its replay buffer, and its exploration schedule and learning_starts
count from here, epsilon back at its start value); ``l2init``'s anchor and the probes'
``dist_from_init`` take the new initialisation. At every task switch (``at_shift=true``) that is the continual
literature's "fresh agent trained on each task for the same budget" baseline, within the same
run."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import register
from plasticity_bench.interventions.schedule import Scheduled
from plasticity_bench.nets.networks import reinitialised
from plasticity_bench.nets.surgery import weight_layers, zero_moments


@dataclass
class ResetConfig:
    interval: int = ranged(2_000_000, ge=1)
    """Agent steps between resets."""
    layers: int = ranged(1, ge=0)
    """How many weight layers, counted from the output, to re-initialise (1 = head only; 0 = every
    parameter, and a new optimizer: a fresh agent)."""
    at_shift: bool = False
    """Reset at every task switch instead of every ``interval`` agent steps (task sequences only)."""


@register("reset")
class Reset(Scheduled):
    Config = ResetConfig

    @torch.no_grad()
    def apply(self, agent) -> dict:
        if self.cfg.layers == 0:
            return self.fresh_agent(agent)
        for _, layer in weight_layers(agent.network)[-self.cfg.layers :]:
            fresh = reinitialised(layer)
            for param, new in zip(layer.parameters(), fresh.parameters()):
                param.copy_(new)
                zero_moments(agent.optimizer, param)
        return {"reset_layers": torch.tensor(float(self.cfg.layers))}

    @torch.no_grad()
    def fresh_agent(self, agent) -> dict:
        agent.network.load_state_dict(reinitialised(agent.network).state_dict())  # (in place: same tensors)
        if agent.target is not None:
            agent.target.load_state_dict(agent.network.state_dict())
        agent.rebuild_optimizer(keep_state=False)
        agent.restart()  # what else a fresh agent forgets (PPO: the rollout in progress; DQN: its replay,
        agent.interventions.restarted(agent.network)  # and exploration), and the interventions' anchors
        return {"reset_layers": torch.tensor(float(len(weight_layers(agent.network))))}
