"""MinAtar (Young & Tian 2019) batched in-process, with the same API as the Atari envs.

A Python loop over ``num_envs`` ``minatar.Environment`` objects is fast enough (the games are
10x10 grids) and, unlike EnvPool, lets us pickle the exact game and RNG state into a
checkpoint, so a resumed MinAtar run replays an uninterrupted one step for step.
Observations are channels-first ``bool`` arrays ``(C, 10, 10)``; autoreset is same-step
(``info["final_obs"]`` holds the true last observation of a finished episode).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from minatar import Environment

from plasticity_bench.core.ranges import ranged
from plasticity_bench.envs.shift import ShiftConfig

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


@dataclass
class MinAtarConfig:
    default_threads: ClassVar[int] = 1
    """``threads=auto``: one; make bench measures a MinAtar DQN update slower on two threads than
    on one, and runs side by side then do not fight over cores."""
    suite: str = "minatar"
    """Suite name written into every CSV row."""
    game: str = "breakout"
    """One of asterix, breakout, freeway, seaquest, space_invaders."""
    num_envs: int = ranged(1, ge=1)
    """Environments stepped together. 1 matches the MinAtar paper's DQN."""
    sticky_action_prob: float = ranged(0.1, ge=0, le=1)
    """The MinAtar paper's sticky actions."""
    difficulty_ramping: bool = True
    """MinAtar's default: games speed up as the agent progresses."""
    minimal_action_set: bool = False
    """False = all 6 actions, as in the MinAtar paper; True = the game's minimal set."""
    max_episode_steps: int = ranged(0, ge=0)
    """Truncate episodes after this many steps; 0 = no cap (as in the MinAtar paper)."""
    total_steps: int = ranged(5_000_000, ge=1)
    """Default agent-step budget of a run on this suite (frames: MinAtar has no frame skip)."""
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    """A nonstationary run: the task changes every shift.interval agent steps (envs/shift.py)."""


class MinAtarEnv:
    resumes_episodes = True  # the games pickle: a resumed run continues its episodes

    def __init__(self, cfg: MinAtarConfig, seed: int):
        self.cfg = cfg
        self.num_envs = cfg.num_envs
        self._envs = []
        for i in range(cfg.num_envs):
            env = Environment(
                cfg.game, sticky_action_prob=cfg.sticky_action_prob, difficulty_ramping=cfg.difficulty_ramping
            )
            env.seed(seed * 10_007 + i)  # distinct, reproducible stream per env
            self._envs.append(env)
        full = self._envs[0].num_actions()
        self._actions = np.array(
            self._envs[0].minimal_action_set() if cfg.minimal_action_set else range(full)
        )
        self.num_actions = len(self._actions)
        self.single_observation_shape = self._observe(self._envs[0]).shape
        self._elapsed = np.zeros(cfg.num_envs, dtype=np.int64)

    @staticmethod
    def _observe(env: Environment) -> np.ndarray:
        return np.ascontiguousarray(env.state().transpose(2, 0, 1))  # channels first

    def reset(self, seed: int | None = None):
        if seed is not None:
            for i, env in enumerate(self._envs):
                env.seed(seed * 10_007 + i)
        for env in self._envs:
            env.reset()
        self._elapsed[:] = 0
        return np.stack([self._observe(e) for e in self._envs]), {}

    def step(self, actions: np.ndarray):
        n = self.num_envs
        obs = np.empty((n, *self.single_observation_shape), dtype=bool)
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        final_obs = obs
        self._elapsed += 1
        for i, (env, a) in enumerate(zip(self._envs, self._actions[actions])):
            reward[i], terminated[i] = env.act(a)
            obs[i] = self._observe(env)
        if self.cfg.max_episode_steps:
            truncated = (self._elapsed >= self.cfg.max_episode_steps) & ~terminated
            done = terminated | truncated
        else:  # (no cap, the MinAtar paper's setting: two array operations fewer per step)
            truncated, done = np.zeros(n, dtype=bool), terminated
        if done.any():
            final_obs = obs.copy()
            for i in np.flatnonzero(done):
                self._envs[i].reset()
                self._elapsed[i] = 0
                obs[i] = self._observe(self._envs[i])
        return obs, reward, terminated, truncated, {"final_obs": final_obs}

    def state_dict(self) -> dict:
        return {"envs": pickle.dumps(self._envs), "elapsed": self._elapsed.copy()}

    def load_state_dict(self, state: dict) -> None:
        self._envs = pickle.loads(state["envs"])
        self._elapsed = state["elapsed"].copy()

    def close(self) -> None:
        pass
