"""What the runner expects of an agent. Agents implement it; they do not inherit."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn


class Agent(Protocol):
    name: str
    network: nn.Module | None
    """The network probes measure and interventions change (None for agents without one)."""

    def __init__(self, cfg: Any, obs_shape: tuple, obs_dtype: np.dtype, num_actions: int,
                 num_envs: int, device: torch.device, seed: int, interventions: Any) -> None: ...

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        """One action per env for a batch of observations."""

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, step: int) -> dict[str, torch.Tensor]:
        """Take one batched transition (true ``next_obs`` also at episode ends), learn if it is
        time, and return training metrics as detached scalars (empty when nothing happened)."""

    def probe_inputs(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor | None:
        """A batch of the agent's own recent inputs for the probes, drawn with ``rng`` (the
        probe's, not the agent's); None while there is none. Only for agents with a network."""

    def truncate(self, obs: np.ndarray) -> None:
        """The episodes in progress end here without terminating (the runner restarts the envs,
        as at an Atari resume): treat each env's last transition as a time limit that
        bootstraps from ``obs``, the observation that followed it."""

    def prediction(self, outputs: torch.Tensor) -> torch.Tensor:
        """The network's prediction as one scalar per input, from its outputs (batch, outputs):
        the scalar the eNTK probe differentiates (DQN: Q of action 0; PPO: the value). Only for
        agents with a network."""

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: networks, optimizer, replay, RNG, counters."""

    def load_state_dict(self, state: dict) -> None: ...
