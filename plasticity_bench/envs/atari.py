"""Atari through EnvPool, with the gymnasium vector API and same-step autoreset.

EnvPool's own autoreset is "next step": the step that ends an episode returns the true last
observation, and the *following* step ignores the action and returns the reset observation.
That wastes one agent step per episode and creates a fake (last obs -> reset obs) pair. We
instead reset finished envs ourselves, in the same call, with EnvPool's partial
``reset(env_ids)`` (sync mode), so every step returns a real transition: ``obs`` holds the
reset observation of a finished env and ``info["final_obs"]`` its true last observation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

import envpool
import numpy as np
from envpool.registration import registry

from plasticity_bench.core.ranges import ranged
from plasticity_bench.envs.shift import ShiftConfig


@dataclass
class AtariConfig:
    default_threads: ClassVar[int] = 0
    """``threads=auto``: all cores (torch's default); make bench measures a Nature-CNN update
    faster on every thread it adds."""
    suite: str = "atari"
    """Suite name written into every CSV row."""
    game: str = "Breakout"
    """ALE game, as EnvPool names it without the version suffix (Breakout, Pong, ...)."""
    num_envs: int = ranged(8, ge=1)
    """Environments stepped together (one agent step = one step of one env = 4 frames)."""
    sticky_action_prob: float = ranged(0.25, ge=0, le=1)
    """Machado et al. 2018 sticky actions; EnvPool's default is 0, so we set it explicitly."""
    max_episode_frames: int = ranged(108_000, ge=1)
    """Episode cap in emulator frames (27,000 agent steps)."""
    frame_skip: int = ranged(4, ge=1)
    """Emulator frames per agent step (max-pooled over the last two)."""
    stack: int = ranged(4, ge=1)
    """Frames stacked into one observation."""
    noop_max: int = ranged(30, ge=0)
    """Up to this many no-ops at reset, for start-state diversity."""
    num_threads: int = ranged(0, ge=0)
    """EnvPool worker threads; 0 = as many as envs, capped at the cores we have."""
    total_steps: int = ranged(10_000_000, ge=1)
    """Default agent-step budget of a run on this suite."""
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    """A nonstationary run (envs/shift.py): MinAtar only for now; kind=none here."""


def atari_games() -> list[str]:
    """ALE games EnvPool registers as ``<Game>-v5`` (its MuJoCo tasks share the suffix)."""
    return sorted(
        env_id[: -len("-v5")]
        for env_id, spec in registry.specs.items()
        if env_id.endswith("-v5") and spec[0] == "envpool.atari"
    )


class AtariEnv:
    """A batch of ``num_envs`` Atari games; numpy in, numpy out."""

    resumes_episodes = False  # EnvPool cannot snapshot emulators: a resume starts new episodes

    def __init__(self, cfg: AtariConfig, seed: int):
        self.cfg = cfg
        self.num_envs = cfg.num_envs
        self.seed = seed
        self._pool = None
        self._make_pool(seed)
        self.single_observation_shape = self._pool.observation_space.shape
        self.num_actions = int(self._pool.action_space.n)

    def _make_pool(self, seed: int) -> None:
        threads = self.cfg.num_threads or min(self.cfg.num_envs, os.cpu_count() or 1)
        self._pool = envpool.make(
            f"{self.cfg.game}-v5",
            env_type="gymnasium",
            num_envs=self.cfg.num_envs,
            seed=seed,
            num_threads=threads,
            repeat_action_probability=self.cfg.sticky_action_prob,
            max_episode_steps=self.cfg.max_episode_frames // self.cfg.frame_skip,
            frame_skip=self.cfg.frame_skip,
            stack_num=self.cfg.stack,
            noop_max=self.cfg.noop_max,
            episodic_life=False,  # life loss is a training choice of the agent, not of the env
            reward_clip=False,  # returns.csv holds raw game scores; agents clip if they want
        )
        self.seed = seed

    def reset(self, seed: int | None = None):
        if seed is not None and seed != self.seed:
            self._pool.close()
            self._make_pool(seed)
        obs, info = self._pool.reset()
        return obs, {"lives": info["lives"]}

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self._pool.step(np.asarray(actions, dtype=np.int32))
        done = terminated | truncated
        final_obs = obs
        if done.any():
            ids = np.flatnonzero(done)
            final_obs = obs.copy()
            reset_obs, _ = self._pool.reset(ids.astype(np.int32))
            obs[ids] = reset_obs
        return (
            obs,
            reward.astype(np.float32),
            terminated,
            truncated,
            {"final_obs": final_obs, "lives": info["lives"]},
        )

    def state_dict(self) -> dict:
        """Empty: EnvPool cannot snapshot emulator state, so a resumed Atari run starts new
        episodes (the runner resets with a seed derived from the resume step)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore (see state_dict)."""

    def close(self) -> None:
        self._pool.close()
