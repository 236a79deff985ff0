"""Uniform random actions: the baseline that Atari human-normalisation subtracts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plasticity_bench.agents import register


@dataclass
class RandomConfig:
    name: str = "random"
    """Registry name."""


@register("random")
class RandomAgent:
    Config = RandomConfig
    quick_overrides = ()
    network = None

    def __init__(self, cfg, spec, interventions, device, seed):
        self.num_actions, self.num_envs = spec.num_actions, spec.num_envs
        self.rng = np.random.default_rng(seed)

    def act(self, obs, step):
        return self.rng.integers(self.num_actions, size=self.num_envs)

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, step):
        return {}

    def truncate(self, obs):
        """Nothing to cut: it keeps no transitions."""

    def task_switched(self):
        """Nothing to forget."""

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
