"""DQN: update ratio, exploration, target sync, Atari replay memory, an Atari smoke run."""
import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from agents.dqn import DQN, DQNConfig
from agents.replay import ReplayBuffer
from envs import AtariConfig, make_env
from interventions import Composition
from runner.config import compose_config
from runner.loop import Run


def make_dqn(num_envs=4, intervention="none", **overrides):
    cfg = DQNConfig(**{"buffer_size": 1000, "learning_starts": 0, "batch_size": 4, **overrides})
    return DQN(cfg, (4, 10, 10), bool, 6, num_envs, torch.device("cpu"), 0, Composition(intervention))


def feed(agent, steps, num_envs=4, start=0):
    rng = np.random.default_rng(0)
    for t in range(steps):
        obs = rng.random((num_envs, 4, 10, 10)) < 0.5
        nxt = rng.random((num_envs, 4, 10, 10)) < 0.5
        agent.observe(obs, rng.integers(6, size=num_envs), np.ones(num_envs), nxt,
                      np.zeros(num_envs, bool), np.zeros(num_envs, bool), start + (t + 1) * num_envs)


@pytest.mark.parametrize("num_envs, ratio, steps, updates", [(4, 0.25, 10, 10), (1, 0.25, 40, 10), (8, 0.25, 5, 10), (3, 0.5, 4, 6)])
def test_updates_per_agent_step_does_not_depend_on_num_envs(num_envs, ratio, steps, updates):
    agent = make_dqn(num_envs, updates_per_step=ratio)
    feed(agent, steps, num_envs)
    assert agent.updates == updates


def test_no_updates_before_learning_starts():
    agent = make_dqn(4, learning_starts=100)
    feed(agent, 20)  # steps 4 .. 80
    assert agent.updates == 0


def test_epsilon_schedule():
    agent = make_dqn(epsilon_start=1.0, epsilon_end=0.1, exploration_start=100, exploration_steps=1000)
    assert agent.epsilon(0) == 1.0 and agent.epsilon(100) == 1.0
    assert agent.epsilon(600) == pytest.approx(0.55) and agent.epsilon(5000) == pytest.approx(0.1)


def test_hard_and_polyak_target_sync():
    agent = make_dqn(target_update_interval=3, tau=1.0)
    feed(agent, 2)  # 2 updates at ratio .25 with 4 envs
    assert not torch.equal(agent.network.head.weight, agent.target.head.weight)
    feed(agent, 1, start=8)
    assert torch.equal(agent.network.head.weight, agent.target.head.weight)
    soft = make_dqn(target_update_interval=1, tau=0.5)
    before = soft.target.head.weight.clone()
    feed(soft, 1)
    expected = before.lerp(soft.network.head.weight, 0.5)
    torch.testing.assert_close(soft.target.head.weight, expected)


def test_atari_replay_stores_each_frame_once_and_rebuilds_exact_stacks():
    """10k Atari transitions from EnvPool: bytes per transition and exact stacks."""
    env = make_env(AtariConfig(num_envs=8, max_episode_frames=2000), seed=0)  # short episodes: many boundaries
    buffer = ReplayBuffer(10_000, 8, (4, 84, 84), np.uint8, stack=4)
    digest = lambda a: hashlib.blake2b(a.tobytes(), digest_size=8).digest()  # noqa: E731
    seen = set()
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    for _ in range(10_000 // 8):
        actions = rng.integers(env.num_actions, size=8)
        nxt, reward, term, trunc, info = env.step(actions)
        buffer.add(obs, actions, reward, info["final_obs"], term, trunc)
        seen |= {(digest(o), int(a), digest(f)) for o, a, f in zip(obs, actions, info["final_obs"])}
        obs = nxt
    per_slot = buffer.nbytes / (buffer.slots * buffer.num_envs)
    per_transition = buffer.nbytes / len(buffer)
    print(f"replay: {per_slot:.0f} bytes per slot, {per_transition:.0f} bytes per stored transition "
          f"({len(buffer)} transitions, episodes of 500 steps)")
    assert per_slot <= 7_200 and per_transition <= 7_200
    batch = buffer.sample(512, rng)
    for o, a, f in zip(batch["obs"], batch["actions"], batch["next_obs"]):
        assert (digest(o), int(a), digest(f)) in seen


def test_atari_dqn_smoke_run(tmp_path):
    cfg = compose_config(["env=atari", "agent=dqn", "env.num_envs=2", "total_steps=600", "agent.learning_starts=300",
                          "agent.buffer_size=2000", "agent.batch_size=4", "log.interval=100", "log.progress=false",
                          f"run_dir={tmp_path}"])
    assert Run(cfg).train() == 0
    d = tmp_path / "atari" / "Breakout" / "dqn" / "none" / "seed0"
    metrics = pd.read_csv(d / "metrics.csv")
    assert {"loss", "q_mean"} <= set(metrics["metric"]) and np.isfinite(metrics["value"]).all()
    assert (d / "done").exists()


def test_metrics_cover_every_update_of_a_step_and_keep_interval_hook_metrics():
    cfg = DQNConfig(buffer_size=1000, learning_starts=0, batch_size=4, updates_per_step=0.25)
    agent = DQN(cfg, (4, 10, 10), bool, 6, 8, torch.device("cpu"), 0,
                Composition("reset", {"reset": {"interval": 16}}))
    rng = np.random.default_rng(0)
    seen = []
    for t in range(1, 4):  # 8 envs x 0.25: two updates per agent step
        obs = rng.random((8, 4, 10, 10)) < 0.5
        seen.append(agent.observe(obs, rng.integers(6, size=8), np.ones(8), obs, np.zeros(8, bool),
                                  np.zeros(8, bool), t * 8))
    assert agent.updates == 6
    assert [("reset_layers" in m) for m in seen] == [False, True, False]  # fired at step 16, kept
    assert all({"loss", "q_mean", "grad_norm"} <= set(m) for m in seen)
