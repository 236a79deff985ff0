"""PPO's rollout: ``num_steps`` rows of ``num_envs`` transitions, filled one row per agent step,
then turned into advantages and returns and cut into minibatches (as ``replay.py`` is DQN's)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimates for (steps, envs) tensors. ``dones[t]`` cuts the chain
    after step t; ``next_value`` is the value of the observation after the last step."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        following = next_value if t == len(rewards) - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages


@dataclass
class Rollout:
    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    """Log-probability of each action under the policy that acted."""
    values: torch.Tensor
    """The critic's value of each observation when it acted."""
    rewards: torch.Tensor
    """As trained on (clipped, scaled, a time limit's bootstrap added)."""
    dones: torch.Tensor
    """1 where an episode ended after the step (terminated or cut)."""
    t: int = 0
    """The next row to fill."""
    filled: int = 0
    """Rows holding data (the probes draw from them)."""

    @classmethod
    def empty(cls, steps: int, envs: int, obs_shape: tuple, obs_dtype: np.dtype, device) -> Rollout:
        obs = torch.zeros(
            (steps, envs, *obs_shape), dtype=torch.from_numpy(np.zeros(0, obs_dtype)).dtype, device=device
        )
        return cls(
            obs,
            torch.zeros((steps, envs), dtype=torch.long, device=device),
            *(torch.zeros((steps, envs), device=device) for _ in range(4)),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("t", "filled")}

    def add(self, **row: torch.Tensor) -> bool:
        """Write one row (every tensor field); True when that filled the rollout (the next row is
        the first again)."""
        for key, value in row.items():
            getattr(self, key)[self.t] = value
        self.t += 1
        self.filled = max(self.filled, self.t)
        full = self.t == len(self.obs)
        if full:
            self.t = 0
        return full

    def advantages_and_returns(
        self, next_value: torch.Tensor, gamma: float, lam: float, value_target: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and the critic's targets: the lambda-returns (``gae``), or the discounted
        sum of the rewards, bootstrapped only where an episode is cut or the rollout ends
        (``discounted``: GAE with lambda 1 and no values)."""
        advantages = gae(self.rewards, self.values, self.dones, next_value, gamma, lam)
        if value_target == "discounted":
            return advantages, gae(
                self.rewards, torch.zeros_like(self.values), self.dones, next_value, gamma, 1.0
            )
        return advantages, advantages + self.values

    def minibatches(
        self, extra: dict[str, torch.Tensor], rng: np.random.Generator, epochs: int, count: int
    ) -> Iterator[dict[str, torch.Tensor]]:
        """``epochs`` passes over the rows (and ``extra``: advantages, returns), each in a new
        order drawn from ``rng``, cut into ``count`` minibatches."""
        flat = {k: v.flatten(0, 1) for k, v in self.tensors().items()} | {
            k: v.flatten() for k, v in extra.items()
        }
        size = len(flat["actions"])
        for _ in range(epochs):
            order = torch.as_tensor(rng.permutation(size), device=self.obs.device)
            for indices in order.chunk(count):
                yield {k: v[indices] for k, v in flat.items()}

    def cut(self, bootstrap: torch.Tensor, gamma: float) -> None:
        """End the episodes of the last row written as time limits, bootstrapping with
        ``bootstrap`` (the values of the observations that followed): a resume that restarts
        the envs, so GAE never runs across the seam."""
        if self.t == 0:
            return
        row = self.t - 1
        self.rewards[row] += gamma * (1.0 - self.dones[row]) * bootstrap
        self.dones[row] = 1.0

    def state_dict(self) -> dict:
        return {"rollout": self.tensors(), "t": self.t, "filled": self.filled}

    def load_state_dict(self, state: dict, device) -> None:
        for key, value in state["rollout"].items():
            setattr(self, key, value.to(device))
        self.t, self.filled = state["t"], state["filled"]
