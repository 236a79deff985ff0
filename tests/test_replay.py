"""Replay buffer: stacks rebuilt from stored frames equal what the env returned."""

import numpy as np
import pytest

from plasticity_bench.agents.replay import VALID, ReplayBuffer


class FakeStackedEnv:
    """N envs whose frames encode (env, episode, t); stacks shift like EnvPool's, reset obs
    repeats its first frame, episodes end at random by termination or truncation."""

    def __init__(self, n, stack=4, seed=0):
        self.n, self.stack, self.rng = n, stack, np.random.default_rng(seed)
        self.episode = np.zeros(n, int)
        self.t = np.zeros(n, int)

    def frame(self, i):
        return np.full((2, 2), (i * 50 + self.episode[i] * 7 + self.t[i]) % 256, np.uint8)

    def reset_obs(self, i):
        return np.stack([self.frame(i)] * self.stack)

    def reset(self):
        self.obs = np.stack([self.reset_obs(i) for i in range(self.n)])
        return self.obs.copy()

    def step(self):
        final = self.obs.copy()
        self.t += 1
        for i in range(self.n):
            final[i] = np.concatenate([self.obs[i, 1:], self.frame(i)[None]])
        r = self.rng.normal(size=self.n).astype(np.float32)
        term = self.rng.random(self.n) < 0.05
        trunc = ~term & (self.rng.random(self.n) < 0.05)
        obs = final.copy()
        for i in np.flatnonzero(term | trunc):
            self.episode[i] += 1
            self.t[i] = 0
            obs[i] = self.reset_obs(i)
        self.obs = obs
        return obs.copy(), r, term, trunc, final


def fill(buffer, env, steps, actions_rng):
    obs = env.reset()
    seen = []
    for _ in range(steps):
        a = actions_rng.integers(4, size=env.n)
        nxt, r, term, trunc, final = env.step()
        buffer.add(obs, a, r, final, term, trunc)
        seen.append((obs, a, r, final, term, trunc))
        obs = nxt
    return seen


@pytest.mark.parametrize("capacity", [10_000, 300])  # 300 wraps around many times
def test_sampled_transitions_are_transitions_the_env_returned(capacity):
    env = FakeStackedEnv(n=3)
    buffer = ReplayBuffer(capacity, 3, (4, 2, 2), np.uint8, stack=4)
    seen = fill(buffer, env, 500, np.random.default_rng(1))
    known = {
        (o.tobytes(), int(a), float(r), f.tobytes(), bool(te))
        for obs, acts, rews, finals, terms, _ in seen
        for o, a, r, f, te in zip(obs, acts, rews, finals, terms)
    }
    batch = buffer.sample(256, np.random.default_rng(2))
    for o, a, r, f, d in zip(
        batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"], batch["discounts"]
    ):
        assert (o.tobytes(), int(a), float(r), f.tobytes(), d == 0.0) in known


def test_truncation_bootstraps_and_termination_does_not():
    buffer = ReplayBuffer(100, 1, (4, 2, 2), np.uint8, stack=4, gamma=0.9)
    obs = np.zeros((1, 4, 2, 2), np.uint8)
    final = np.ones((1, 4, 2, 2), np.uint8)
    buffer.add(obs, [1], [1.0], final, np.array([False]), np.array([True]))
    buffer.add(obs, [2], [2.0], final, np.array([True]), np.array([False]))
    batch = buffer.sample(64, np.random.default_rng(0))
    by_action = dict(zip(batch["actions"], batch["discounts"]))
    assert by_action[1] == pytest.approx(0.9) and by_action[2] == 0.0
    assert (batch["next_obs"][:, -1] == 1).all()  # newest frame: the true last observation


def test_n_step_returns_stop_at_episode_end():
    buffer = ReplayBuffer(100, 1, (3,), np.float32, stack=1, gamma=0.5, n_step=3)
    obs = np.zeros((1, 3), np.float32)
    flags = [(False, False), (False, False), (True, False), (False, False), (False, False), (False, False)]
    for t, (term, trunc) in enumerate(flags):
        buffer.add(obs + t, [t], [1.0], obs + t + 1, np.array([term]), np.array([trunc]))
    batch = buffer.sample(200, np.random.default_rng(0))
    got = {
        int(a): (r, d, n[0])
        for a, r, d, n in zip(batch["actions"], batch["rewards"], batch["discounts"], batch["next_obs"])
    }
    assert got[0] == pytest.approx((1.75, 0.0, 3.0))  # 1 + .5 + .25, terminated at t=2
    assert got[2] == pytest.approx((1.0, 0.0, 3.0))
    assert set(got) == {0, 1, 2, 3}  # 4 and 5 have no 3-step future yet; 200 draws see all four
    assert got[1] == pytest.approx((1.5, 0.0, 3.0)) and got[3] == pytest.approx((1.75, 0.125, 6.0))


def test_checkpoint_round_trip_continues_identically():
    env_a = FakeStackedEnv(n=2, seed=3)
    a = ReplayBuffer(400, 2, (4, 2, 2), np.uint8, stack=4)
    fill(a, env_a, 150, np.random.default_rng(0))
    b = ReplayBuffer(400, 2, (4, 2, 2), np.uint8, stack=4)
    b.load_state_dict({k: np.array(v) for k, v in a.state_dict().items()})
    for key in ("frames", "actions", "rewards", "flags", "head", "written", "episode_start"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    sa, sb = a.sample(64, np.random.default_rng(5)), b.sample(64, np.random.default_rng(5))
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key])


def test_minatar_style_whole_observations():
    buffer = ReplayBuffer(1000, 2, (4, 10, 10), bool, stack=1)
    rng = np.random.default_rng(0)
    seen = set()
    obs = rng.random((2, 4, 10, 10)) < 0.5
    for _ in range(200):
        nxt = rng.random((2, 4, 10, 10)) < 0.5
        term = rng.random(2) < 0.1
        buffer.add(obs, [0, 1], [0.0, 0.0], nxt, term, np.zeros(2, bool))
        seen |= {(o.tobytes(), n.tobytes()) for o, n in zip(obs, nxt)}
        obs = np.where(term[:, None, None, None], rng.random((2, 4, 10, 10)) < 0.5, nxt)
    batch = buffer.sample(128, rng)
    assert all((o.tobytes(), n.tobytes()) in seen for o, n in zip(batch["obs"], batch["next_obs"]))


def chain_pairs(seen, n_step):
    """(obs, next_obs, bootstraps) of every n-step transition the env's episodes contain."""
    pairs = set()
    for t, (obs, *_rest) in enumerate(seen):
        for i in range(len(obs)):
            for k in range(n_step):
                if t + k >= len(seen):
                    break
                _, _, _, final, term, trunc = seen[t + k]
                if k == n_step - 1 or term[i] or trunc[i] or t + k == len(seen) - 1:
                    pairs.add((obs[i].tobytes(), final[i].tobytes(), not term[i]))
                if term[i] or trunc[i]:
                    break
    return pairs


@pytest.mark.parametrize("n_step", [1, 3])
def test_a_resume_seam_keeps_every_sampled_transition_one_the_env_returned(n_step):
    """At an Atari resume the envs restart: the agent cuts every episode at the seam (truncate),
    so no frame stack and no n-step return reaches across it."""
    env = FakeStackedEnv(n=3)
    buffer = ReplayBuffer(10_000, 3, (4, 2, 2), np.uint8, stack=4, gamma=0.5, n_step=n_step)
    rng = np.random.default_rng(1)
    before = fill(buffer, env, 60, rng)
    buffer.truncate()
    env.episode += 1  # new episodes (EnvPool cannot restore the emulator)
    env.t[:] = 0
    after = fill(buffer, env, 60, rng)
    obs, actions, rewards, final, term, trunc = before[-1]
    before[-1] = (obs, actions, rewards, final, term, np.ones_like(trunc))  # what the seam means
    known = chain_pairs(before, n_step) | chain_pairs(after, n_step)
    batch = buffer.sample(2048, np.random.default_rng(2))
    got = {
        (o.tobytes(), f.tobytes(), bool(d > 0))
        for o, f, d in zip(batch["obs"], batch["next_obs"], batch["discounts"])
    }
    assert got <= known
    assert not buffer.episode_start.any()


@pytest.mark.parametrize(
    "episode_lengths,stack,n_step,steps",
    [
        ((6,), 1, 1, 1200),  # MinAtar DQN: one slot in seven is padding, the buffer not full
        ((2, 6, 12), 1, 1, 400),  # envs holding different numbers of sampleable slots
        ((3, 7), 4, 3, 900),  # Atari-style stacks and n-step returns in a wrapped buffer
    ],
)
def test_sampling_is_uniform_over_the_sampleable_slots(episode_lengths, stack, n_step, steps):
    """Each round of rejection keeps the first accepted of twice as many draws as it misses: the
    batches must still cover every sampleable slot equally often, across envs too, and never a
    padding slot, a slot whose history was overwritten or one whose n-step future is unwritten."""
    num_envs = len(episode_lengths)
    buffer = ReplayBuffer(
        3000 if stack == 1 else 600, num_envs, (stack, 2, 2), np.uint8, stack=stack, n_step=n_step
    )
    obs = np.zeros((num_envs, stack, 2, 2), np.uint8)
    for t in range(steps):
        ends = np.array([t % length == length - 1 for length in episode_lengths])
        frames = np.full_like(obs, t % 251)  # (distinct frames: a reset stack is padded once)
        buffer.add(obs, np.zeros(num_envs, int), np.zeros(num_envs), frames, ends, np.zeros(num_envs, bool))
        obs = frames
    size = np.minimum(buffer.written, buffer.slots)
    sampleable = set()  # the rules, slot by slot
    for e in range(num_envs):
        full = buffer.written[e] >= buffer.slots
        for age in range(size[e]):
            s = (buffer.head[e] + age) % buffer.slots if full else age
            if buffer.flags[e, s] & VALID and (not full or age >= stack) and age <= size[e] - n_step:
                sampleable.add((e, s))
    rng, hits = np.random.default_rng(0), {}
    for _ in range(4000):
        env, slot = buffer._sample_slots(32, size, rng)
        for key in zip(env.tolist(), slot.tolist()):
            hits[key] = hits.get(key, 0) + 1
    assert set(hits) == sampleable
    counts = np.array(list(hits.values()))
    expected = 4000 * 32 / len(sampleable)
    chi2 = ((counts - expected) ** 2 / expected).sum()  # about len - 1 for uniform draws
    assert abs(chi2 - (len(counts) - 1)) < 5 * np.sqrt(2 * (len(counts) - 1))
