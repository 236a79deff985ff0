"""Nonstationary RL: ``env.shift`` turns any run into a sequence of tasks, applied here, in the
env layer, so every agent gets it unchanged (Lyle et al. 2024's mechanisms inside the RL suites).

A task lasts ``interval`` agent steps (summed over envs; ``num_envs`` must divide it, so switches
land exactly); task t covers steps [t x interval, (t + 1) x interval). Task 0 is always the
unshifted env. Kinds:
- ``game_cycle`` (MinAtar): the games of ``games``, one per task, cycling; every game's channels
  zero-padded into one 10-channel layout, the full 6-action set, so one network sees them all.
  At a switch every episode in progress ends as a time limit and the next game's start.
- ``obs_permutation`` (MinAtar): the observation's positions (the same permutation for every
  channel) under a new random permutation each task: the input distribution moves.
- ``obs_offset`` (vector observations: classic): a fixed offset vector d_t ~ N(0, sigma^2) per
  observation dimension added to every observation of task t (d_0 = 0): Continual Gym Control.
- ``reward_scale`` (MinAtar, classic): the reward the agent learns from is multiplied by
  ``1 + growth x task`` (``info["score"]`` keeps the raw game score, which returns.csv records).
``smooth=true`` (every kind but game_cycle), one convention for all: during task t the shift
moves evenly from task t's value to task t + 1's, which it reaches at the switch (the reward
factor grows linearly with the step; a permutation moves one position pair at a time, the swaps
that make the next permutation applied one by one; the offset is interpolated linearly).
Everything is drawn from the run's seed and saved in checkpoints: a resumed run shifts exactly
as an uninterrupted one, and runs of one seed see the same tasks whatever their agent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from plasticity_bench.core.ranges import ranged

KINDS = ("none", "game_cycle", "obs_permutation", "obs_offset", "reward_scale")
SMOOTH_KINDS = ("obs_permutation", "obs_offset", "reward_scale")
# The suites each kind works on: grids (MinAtar) or vectors (classic); Atari has none yet.
SUITES_OF = {
    "game_cycle": ("minatar",),
    "obs_permutation": ("minatar",),
    "obs_offset": ("classic",),
    "reward_scale": ("minatar", "classic"),
}
MINATAR_CHANNELS = 10  # seaquest has the most


@dataclass
class ShiftConfig:
    kind: str = ranged("none", choices=KINDS)
    """none (a stationary run) | game_cycle | obs_permutation | obs_offset | reward_scale."""
    interval: int = ranged(1_000_000, ge=1)
    """Agent steps (summed over envs) per task."""
    smooth: bool = False
    """Spread each task's change evenly over its interval (obs_permutation, obs_offset, reward_scale)."""
    games: list = field(
        default_factory=lambda: ["asterix", "breakout", "freeway", "seaquest", "space_invaders"]
    )
    """game_cycle: the MinAtar games, one per task, in this order, cycling."""
    growth: float = ranged(1.0, ge=0)
    """reward_scale: the learned reward is multiplied by 1 + growth x task."""
    sigma: float = ranged(2.0, gt=0)
    """obs_offset: standard deviation of each task's offset, per observation dimension."""


def check_shift(env, reward_clip: bool) -> None:
    """The combinations that cannot work, as one-line ValueErrors (before a run starts); ``env``
    is the suite config."""
    suite, shift, num_envs = env.suite, env.shift, env.num_envs
    if shift.kind == "none":
        return
    if shift.smooth and shift.kind not in SMOOTH_KINDS:
        raise ValueError(
            f"env.shift.smooth=true: {shift.kind} has no smooth form; valid with: {', '.join(SMOOTH_KINDS)}"
        )
    if suite not in SUITES_OF[shift.kind]:
        valid = [k for k, suites in SUITES_OF.items() if suite in suites]
        raise ValueError(
            f"env.shift.kind={shift.kind} works on {' and '.join(SUITES_OF[shift.kind])} only; "
            f"valid on {suite}: {', '.join(valid) or 'none yet'}"
        )
    if shift.interval % num_envs:
        raise ValueError(
            f"env.shift.interval={shift.interval:,} must be a multiple of env.num_envs={num_envs}, "
            "so that every switch lands on a step of the run"
        )
    if shift.kind == "reward_scale" and reward_clip:
        raise ValueError(
            "env.shift.kind=reward_scale with agent.reward_clip=true would learn from sign(reward): "
            "the scale would change nothing; set agent.reward_clip=false"
        )
    if shift.kind == "game_cycle" and env.minimal_action_set:
        raise ValueError(
            "env.shift.kind=game_cycle needs env.minimal_action_set=false (one action set for every game)"
        )
    if shift.kind == "game_cycle":
        from plasticity_bench.envs.minatar import GAMES

        unknown = [g for g in shift.games if g not in GAMES]
        if unknown or not shift.games:
            raise ValueError(f"env.shift.games: unknown {unknown or 'empty list'}; valid: {', '.join(GAMES)}")


class ShiftingEnv:
    """A batched env (the gymnasium-style API of envs/) whose task changes every ``interval``
    agent steps. ``task`` is the current task index."""

    def __init__(self, make, cfg, seed: int):
        """``make(env_cfg, seed)`` builds an inner env; ``cfg`` is the suite config."""
        self.shift, self.cfg, self.seed, self._make = cfg.shift, cfg, seed, make
        self.rng = np.random.default_rng([seed, 0x5A1F7])
        self.steps, self.task = 0, 0
        self._inner = self._make_inner(0)
        self.num_envs, self.num_actions = self._inner.num_envs, self._inner.num_actions
        self.single_observation_shape = self._inner.single_observation_shape
        if self.shift.kind == "game_cycle":
            self.single_observation_shape = (MINATAR_CHANNELS, *self.single_observation_shape[1:])
        positions = int(np.prod(self.single_observation_shape[1:]))
        self.permutation = np.arange(positions)
        self.swaps = np.zeros((0, 2), dtype=np.int64)  # the swaps that lead to the next permutation
        self.applied = 0
        if self.shift.kind == "obs_permutation":
            self._draw_swaps()  # to the permutation of task 1; task 0 is the identity
        self.offsets = {}  # obs_offset: task -> d_task, drawn when first needed

    def _make_inner(self, task: int):
        cfg = self.cfg
        if self.shift.kind == "game_cycle":
            game = self.shift.games[task % len(self.shift.games)]
            cfg = dataclasses.replace(cfg, game=game)
        return self._make(cfg, self.seed + 7919 * task)  # each visit: fresh episodes of its own

    def _draw_swaps(self) -> None:
        """Fisher-Yates swaps: applied in full, a uniformly random permutation of the last one."""
        n = len(self.permutation)
        self.swaps = np.array([(i, self.rng.integers(i + 1)) for i in range(n - 1, 0, -1)], dtype=np.int64)
        self.applied = 0

    def offset(self, task: int) -> np.ndarray:
        """d_task: zero for task 0, else N(0, sigma^2) per dimension from the run's seed and the task
        alone (so a resumed run, and a run of another agent with the same seed, sees the same)."""
        if task not in self.offsets:
            shape = self.single_observation_shape
            rng = np.random.default_rng([self.seed, 0x0FF5E7, task])
            self.offsets[task] = (
                np.zeros(shape, np.float32)
                if task == 0
                else rng.normal(0.0, self.shift.sigma, shape).astype(np.float32)
            )
        return self.offsets[task]

    def current_offset(self) -> np.ndarray:
        if not self.shift.smooth:
            return self.offset(self.task)
        progress = (self.steps % self.shift.interval) / self.shift.interval
        return self.offset(self.task) + progress * (self.offset(self.task + 1) - self.offset(self.task))

    def _apply_swaps(self, upto: int) -> None:
        for i, j in self.swaps[self.applied : upto]:
            self.permutation[[i, j]] = self.permutation[[j, i]]
        self.applied = max(self.applied, upto)

    # ---- what the agent sees -----------------------------------------------------------
    def _view(self, obs: np.ndarray) -> np.ndarray:
        if self.shift.kind == "game_cycle":
            padded = np.zeros((len(obs), *self.single_observation_shape), dtype=obs.dtype)
            padded[:, : obs.shape[1]] = obs
            return padded
        if self.shift.kind == "obs_permutation":
            flat = obs.reshape(*obs.shape[:2], -1)
            return flat[:, :, self.permutation].reshape(obs.shape)
        if self.shift.kind == "obs_offset":
            return obs + self.current_offset()
        return obs

    def reward_factor(self) -> float:
        if self.shift.kind != "reward_scale":
            return 1.0
        progress = self.steps / self.shift.interval if self.shift.smooth else self.task
        return 1.0 + self.shift.growth * progress

    def reset(self, seed: int | None = None):
        obs, info = self._inner.reset(seed=seed)
        return self._view(obs), info

    def step(self, actions: np.ndarray):
        factor = self.reward_factor()
        obs, reward, terminated, truncated, info = self._inner.step(actions)
        info = {**info, "final_obs": self._view(info["final_obs"]), "score": reward}  # as the step saw it
        self.steps += self.num_envs
        task = self.steps // self.shift.interval
        if task != self.task:
            self.task = task
            obs, truncated = self._switch(obs, info, terminated, truncated)
        elif self.shift.kind == "obs_permutation" and self.shift.smooth:
            self._apply_swaps(
                round(len(self.swaps) * (self.steps % self.shift.interval) / self.shift.interval)
            )
        return self._view(obs), reward * factor, terminated, truncated, info

    def _switch(self, obs, info, terminated, truncated):
        """A new task starts with the next step; returns (obs, truncated) for this one."""
        if self.shift.kind == "obs_permutation":
            self._apply_swaps(len(self.swaps))  # the smooth walk ends where the abrupt one jumps
            self._draw_swaps()
        if self.shift.kind == "game_cycle":  # the episodes in progress end here, as time limits
            self._inner.close()
            self._inner = self._make_inner(self.task)
            obs, _ = self._inner.reset()
            truncated = truncated | ~terminated
        return obs, truncated

    # ---- checkpoints -------------------------------------------------------------------
    @property
    def resumes_episodes(self) -> bool:
        return self._inner.resumes_episodes

    def state_dict(self) -> dict:
        return {
            "inner": self._inner.state_dict(),
            "steps": self.steps,
            "task": self.task,
            "rng": self.rng.bit_generator.state,
            "permutation": self.permutation.copy(),
            "swaps": self.swaps.copy(),
            "applied": self.applied,
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.task, self.applied = state["steps"], state["task"], state["applied"]
        self.rng.bit_generator.state = state["rng"]
        self.permutation, self.swaps = state["permutation"].copy(), state["swaps"].copy()
        if self.shift.kind == "game_cycle":
            self._inner.close()
            self._inner = self._make_inner(self.task)
        self._inner.load_state_dict(state["inner"])
        self.offsets = {}  # (drawn again from the seed and the task)

    def close(self) -> None:
        self._inner.close()
