"""Classic control through EnvPool (CartPole-v1, Acrobot-v1, LunarLander-v3): vector
observations, the CPU-minutes suite of the continual-RL literature (Continual Gym Control: TRAC,
Muppidi et al. 2024; C-CHAIN, Tang et al. 2025), with the same batched API and same-step
autoreset as the Atari envs (envs/atari.py says why we reset finished envs ourselves).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import envpool
import numpy as np

from plasticity_bench.core.ranges import ranged
from plasticity_bench.envs.shift import ShiftConfig

GAMES = {"CartPole": "CartPole-v1", "Acrobot": "Acrobot-v1", "LunarLander": "LunarLander-v3"}


@dataclass
class ClassicConfig:
    default_threads: ClassVar[int] = 1
    """``threads=auto``: one. The 3 x 256 MLPs update a little faster on two threads of an idle
    machine, and many times slower on two busy cores (a second run, a sweep): one is the safe
    choice for networks this small."""
    suite: str = "classic"
    """Suite name written into every CSV row."""
    game: str = "CartPole"
    """One of CartPole, Acrobot, LunarLander (EnvPool's CartPole-v1, Acrobot-v1, LunarLander-v3)."""
    num_envs: int = ranged(1, ge=1)
    """Environments stepped together."""
    max_episode_steps: int = ranged(0, ge=0)
    """Truncate episodes after this many steps; 0 = the game's own limit (500, 500, 1,000)."""
    reset_interval: int = ranged(0, ge=0)
    """Every this many steps of each env, end the episodes in progress as time limits and start new
    ones (TRAC's and C-CHAIN's PPO reset the env at every 800-step rollout); 0 = never."""
    total_steps: int = ranged(500_000, ge=1)
    """Default agent-step budget of a run on this suite."""
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    """A nonstationary run: the task changes every shift.interval agent steps (envs/shift.py)."""


class ClassicEnv:
    """A batch of ``num_envs`` classic-control envs; numpy in, float32 observations out."""

    resumes_episodes = False  # EnvPool cannot snapshot env state: a resume starts new episodes

    def __init__(self, cfg: ClassicConfig, seed: int):
        self.cfg, self.num_envs = cfg, cfg.num_envs
        self.steps = 0  # steps of each env in the run (reset_interval's clock; a resume keeps it)
        self._make_pool(seed)
        with warnings.catch_warnings():  # gymnasium's note that the Box bounds are float32
            warnings.simplefilter("ignore", UserWarning)
            self.single_observation_shape = self._pool.observation_space.shape
        self.num_actions = int(self._pool.action_space.n)

    def _make_pool(self, seed: int) -> None:
        limit = {"max_episode_steps": self.cfg.max_episode_steps} if self.cfg.max_episode_steps else {}
        self._pool = envpool.make(
            GAMES[self.cfg.game],
            env_type="gymnasium",
            num_envs=self.cfg.num_envs,
            seed=seed,
            num_threads=1,
            **limit,
        )
        self.seed = seed

    def reset(self, seed: int | None = None):
        if seed is not None and seed != self.seed:
            self._pool.close()
            self._make_pool(seed)
        obs, _ = self._pool.reset()
        return obs.astype(np.float32), {}

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, _ = self._pool.step(np.asarray(actions, dtype=np.int32))
        obs = obs.astype(np.float32)
        final_obs = obs
        self.steps += 1
        if self.cfg.reset_interval and self.steps % self.cfg.reset_interval == 0:
            truncated = truncated | ~terminated  # every episode in progress ends here
        done = terminated | truncated
        if done.any():
            ids = np.flatnonzero(done)
            final_obs = obs.copy()
            obs[ids] = self._pool.reset(ids.astype(np.int32))[0]
        return obs, reward.astype(np.float32), terminated, truncated & ~terminated, {"final_obs": final_obs}

    def state_dict(self) -> dict:
        """The step count only: EnvPool cannot snapshot env state (a resumed run starts new episodes)."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state.get("steps", 0)

    def close(self) -> None:
        self._pool.close()
