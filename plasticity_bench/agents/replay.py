"""Circular replay buffer that stores each frame once, for any number of envs.

Each env writes its own stream of *slots*. A slot holds one frame (the newest frame of a
``next_obs``) with the action, reward and flags of the transition that produced it. An episode
starts with padding slots that hold the frames of its reset observation, so the observation
before slot ``j`` is the ``stack`` frames ending at ``j-1`` and the one after ends at ``j``;
frame stacks are rebuilt from indices at sample time. A reset stack that repeats its first
frame (EnvPool's does) is padded with that frame once, flagged START: walking back from a START
slot repeats it. With ``stack=4`` (Atari) a transition costs one 84x84 frame plus 6 bytes, and
an episode one frame more; with ``stack=1`` (MinAtar) a slot holds the whole observation.
``next_obs`` is the true next observation, also at truncation and termination (the env gives it
in ``info["final_obs"]``).
"""

from __future__ import annotations

import math

import numpy as np

TERMINATED, TRUNCATED, VALID, START = 1, 2, 4, 8  # bits of the per-slot flags byte


class ReplayBuffer:
    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple,
        obs_dtype,
        stack: int,
        gamma: float = 0.99,
        n_step: int = 1,
    ):
        if stack > 1 and obs_shape[0] != stack:
            raise ValueError(f"obs_shape {obs_shape} does not start with the stack depth {stack}")
        self.stack, self.gamma, self.n_step = stack, gamma, n_step
        self.num_envs = num_envs
        self.envs = np.arange(num_envs)
        self.obs_shape = tuple(obs_shape)
        self.frame_shape = self.obs_shape[1:] if stack > 1 else self.obs_shape
        self.slots = math.ceil(capacity / num_envs)  # per env
        self.frames = np.zeros((num_envs, self.slots, *self.frame_shape), dtype=obs_dtype)
        self.actions = np.zeros((num_envs, self.slots), dtype=np.int16)
        self.rewards = np.zeros((num_envs, self.slots), dtype=np.float32)
        self.flags = np.zeros((num_envs, self.slots), dtype=np.uint8)
        self.head = np.zeros(num_envs, dtype=np.int64)  # next slot to write, per env
        self.written = np.zeros(num_envs, dtype=np.int64)  # slots ever written, per env
        self.episode_start = np.ones(num_envs, dtype=bool)  # next add starts a new episode

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes + self.actions.nbytes + self.rewards.nbytes + self.flags.nbytes

    def __len__(self) -> int:
        """Transitions that can be sampled (padding slots excluded)."""
        return int(
            sum(((self.flags[i, : min(w, self.slots)] & VALID) > 0).sum() for i, w in enumerate(self.written))
        )

    def can_sample(self) -> bool:
        """Whether ``sample`` can draw: some env holds at least ``n_step`` transitions."""
        slots = [self.flags[i, : min(w, self.slots)] for i, w in enumerate(self.written)]
        return any(((flags & VALID) > 0).sum() >= self.n_step for flags in slots)

    def truncate(self) -> None:
        """End every env's episode in progress at its last transition, as a time limit: its
        n-step returns stop there and bootstrap from its stored next observation, and the next
        ``add`` starts a new episode (used when the envs restart, e.g. at a resume)."""
        for env in np.flatnonzero(~self.episode_start & (self.written > 0)):
            self.flags[env, (self.head[env] - 1) % self.slots] |= TRUNCATED
        self.episode_start[:] = True

    def _padding(self, obs: np.ndarray) -> np.ndarray:
        """Frames of a reset observation to store: leading repeats of a frame stored once."""
        if self.stack == 1:
            return obs[None]
        first = 0
        while first + 1 < self.stack and np.array_equal(obs[first], obs[first + 1]):
            first += 1
        return obs[first:]

    def _push(self, env: int, frame, action=0, reward=0.0, flags=0) -> None:
        h = self.head[env]
        self.frames[env, h] = frame
        self.actions[env, h], self.rewards[env, h], self.flags[env, h] = action, reward, flags
        self.head[env] = (h + 1) % self.slots
        self.written[env] += 1

    def add(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """Add one transition per env (arrays with a leading ``num_envs`` axis)."""
        for env in np.flatnonzero(self.episode_start):
            for k, frame in enumerate(self._padding(obs[env])):
                self._push(env, frame, flags=START if k == 0 else 0)  # padding: not sampleable
        envs, h = self.envs, self.head
        self.frames[envs, h] = next_obs[:, -1] if self.stack > 1 else next_obs
        self.actions[envs, h] = actions
        self.rewards[envs, h] = rewards
        self.flags[envs, h] = VALID | terminated * TERMINATED | truncated * TRUNCATED
        self.head = (h + 1) % self.slots
        self.written += 1
        self.episode_start = np.asarray(terminated) | np.asarray(truncated)

    def _stack_ending_at(self, env: np.ndarray, slot: np.ndarray) -> np.ndarray:
        if self.stack == 1:
            return self.frames[env, slot]
        idx = np.empty((len(slot), self.stack), dtype=np.int64)
        idx[:, -1] = slot
        for k in range(self.stack - 2, -1, -1):  # walk back; a START slot repeats itself
            at_start = (self.flags[env, idx[:, k + 1]] & START) > 0
            idx[:, k] = np.where(at_start, idx[:, k + 1], (idx[:, k + 1] - 1) % self.slots)
        return self.frames[env[:, None], idx]

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniform batch of n-step transitions: obs, actions, returns, next_obs, discounts.

        ``discounts`` is gamma^k for a transition that bootstraps after k steps, 0 if it ended
        in termination; truncation still bootstraps (from the true last observation).
        """
        size = np.minimum(self.written, self.slots)
        env, slot = self._sample_slots(batch_size, size, rng)
        # the loop below for one step, in a third of the time (MinAtar DQN samples every frame)
        if self.n_step == 1:
            returns, last = self.rewards[env, slot], slot
            discounts = np.where((self.flags[env, slot] & TERMINATED) > 0, 0.0, self.gamma).astype(np.float32)
        else:
            returns = np.zeros(batch_size, dtype=np.float32)
            discounts = np.ones(batch_size, dtype=np.float32)
            active = np.ones(batch_size, dtype=bool)
            last = slot.copy()
            for k in range(self.n_step):
                s = (slot + k) % self.slots
                f = self.flags[env, s]
                returns += np.where(active, discounts * self.rewards[env, s], 0.0)
                last = np.where(active, s, last)
                discounts = np.where(active, discounts * self.gamma, discounts)
                discounts = np.where(active & ((f & TERMINATED) > 0), 0.0, discounts)
                active &= (f & (TERMINATED | TRUNCATED)) == 0
        return {
            "obs": self._stack_ending_at(env, (slot - 1) % self.slots),
            "actions": self.actions[env, slot].astype(np.int64),
            "rewards": returns,
            "next_obs": self._stack_ending_at(env, last),
            "discounts": discounts,
        }

    def _sample_slots(self, batch_size: int, size: np.ndarray, rng: np.random.Generator):
        """Draw valid slots uniformly: rejection of padding and of slots whose history was
        overwritten (the ``stack`` oldest) or whose n-step future is not written yet."""
        cum = np.cumsum(size)
        if cum[-1] == 0:
            raise ValueError("cannot sample from an empty replay buffer")

        def draw(count: int) -> tuple[np.ndarray, np.ndarray]:  # (env, slot) of the accepted draws
            flat = rng.integers(cum[-1], size=count)
            e = np.searchsorted(cum, flat, side="right")
            age = flat - (cum[e] - size[e])  # 0 = oldest slot of that env
            full = self.written[e] >= self.slots
            s = np.where(full, (self.head[e] + age) % self.slots, age)
            history_kept = ~full | (age >= self.stack)  # only a full buffer overwrites history
            ok = ((self.flags[e, s] & VALID) > 0) & history_kept & (age <= size[e] - self.n_step)
            return e[ok], s[ok]

        return _first_accepted(batch_size, draw)

    def state_dict(self) -> dict:
        used = int(min(self.written.max(), self.slots))  # do not write never-filled slots to disk
        return {
            "frames": self.frames[:, :used],
            "actions": self.actions[:, :used],
            "rewards": self.rewards[:, :used],
            "flags": self.flags[:, :used],
            "head": self.head.copy(),
            "written": self.written.copy(),
            "episode_start": self.episode_start.copy(),
        }

    def load_state_dict(self, state: dict) -> None:
        used = state["frames"].shape[1]
        if (
            state["frames"].shape[0] != self.num_envs
            or used > self.slots
            or state["frames"].shape[2:] != self.frames.shape[2:]
        ):
            raise ValueError(
                f"replay checkpoint of shape {state['frames'].shape} does not fit a "
                f"buffer of shape {self.frames.shape}"
            )
        for key in ("frames", "actions", "rewards", "flags"):
            getattr(self, key)[:, :used] = state[key]
        self.head, self.written = state["head"].copy(), state["written"].copy()
        self.episode_start = state["episode_start"].copy()


def _first_accepted(batch_size: int, draw) -> tuple[np.ndarray, ...]:
    """Rejection sampling of ``batch_size`` slots: ``draw(count)`` makes ``count`` uniform draws
    and returns the accepted ones (arrays in draw order). Each round draws twice as many as are
    still missing and keeps the first accepted, so a batch almost always takes one round (about
    one slot in seven is an episode's padding when MinAtar breakout's episodes last 6 steps); the
    kept draws are still independent and uniform over the sampleable slots."""
    parts, missing = [], batch_size
    for _ in range(1000):
        parts.append([accepted[:missing] for accepted in draw(2 * missing)])
        missing -= len(parts[-1][0])
        if missing == 0:
            return tuple(parts[0]) if len(parts) == 1 else tuple(np.concatenate(p) for p in zip(*parts))
    raise ValueError("replay buffer holds no sampleable transition yet")
