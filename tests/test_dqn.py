"""DQN: update ratio, exploration, target sync, Atari replay memory, an Atari smoke run."""

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import feed, make_dqn, make_ppo
from plasticity_bench.agents.base import EnvSpec
from plasticity_bench.agents.dqn import DQN, DQNConfig
from plasticity_bench.agents.replay import ReplayBuffer
from plasticity_bench.envs import AtariConfig, make_env
from plasticity_bench.interventions import Composition
from plasticity_bench.nets.networks import Network
from plasticity_bench.runner.config import compose_config
from plasticity_bench.runner.loop import Run


@pytest.mark.parametrize(
    "num_envs, ratio, steps, updates",
    [(4, 0.25, 10, 10), (1, 0.25, 40, 10), (8, 0.25, 5, 10), (3, 0.5, 4, 6)],
)
def test_updates_per_agent_step_does_not_depend_on_num_envs(num_envs, ratio, steps, updates):
    agent = make_dqn(num_envs, updates_per_step=ratio)
    feed(agent, steps, num_envs)
    assert agent.updates == updates


def test_no_updates_before_learning_starts():
    agent = make_dqn(4, learning_starts=100)
    feed(agent, 20)  # steps 4 .. 80
    assert agent.updates == 0


def test_n_step_updates_wait_for_a_whole_n_step_transition():
    """learning_starts=0 with 3-step returns: the first update comes once an env has taken 3 steps
    (it used to raise "no sampleable transition" on the first step)."""
    agent = make_dqn(4, n_step=3, updates_per_step=1.0)
    feed(agent, 2)
    assert agent.updates == 0
    feed(agent, 1, start=8)
    assert agent.updates == 4


def test_epsilon_schedule():
    agent = make_dqn(epsilon_start=1.0, epsilon_end=0.1, exploration_start=100, exploration_steps=1000)
    assert agent.epsilon(0) == 1.0 and agent.epsilon(100) == 1.0
    assert agent.epsilon(600) == pytest.approx(0.55) and agent.epsilon(5000) == pytest.approx(0.1)


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_acting_is_epsilon_greedy(epsilon):
    """Greedy where no env explores; an exploring env takes a uniform action (so the greedy
    one with probability 1/6 too). Random actions are drawn only on steps where some env explores."""
    agent = make_dqn(8, epsilon_start=epsilon, epsilon_end=epsilon)
    obs = np.random.default_rng(1).random((8, 4, 10, 10)) < 0.5
    with torch.no_grad():
        greedy = agent.network(torch.as_tensor(obs)).argmax(1).numpy()
    actions = np.stack([agent.act(obs, 0) for _ in range(3000)])
    assert (actions != greedy).mean() == pytest.approx(epsilon * 5 / 6, abs=0.01)
    p = epsilon / 6  # each other action's share of the steps, within 5 standard deviations
    for env in range(8):
        share = np.bincount(actions[:, env], minlength=6) / len(actions)
        np.testing.assert_allclose(
            np.delete(share, greedy[env]), p, atol=5 * np.sqrt(p * (1 - p) / len(actions))
        )
    if epsilon == 0:  # a greedy step draws the explore decisions and nothing else
        agent, drawn = make_dqn(8, epsilon_start=0.0, epsilon_end=0.0), np.random.default_rng(0)
        agent.act(obs, 0), drawn.random(8)
        assert agent.rng.bit_generator.state == drawn.bit_generator.state


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
    # short episodes: many boundaries
    env = make_env(AtariConfig(num_envs=8, max_episode_frames=2000), seed=0)
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
    print(
        f"replay: {per_slot:.0f} bytes per slot, {per_transition:.0f} bytes per stored transition "
        f"({len(buffer)} transitions, episodes of 500 steps)"
    )
    assert per_slot <= 7_200 and per_transition <= 7_200
    batch = buffer.sample(512, rng)
    for o, a, f in zip(batch["obs"], batch["actions"], batch["next_obs"]):
        assert (digest(o), int(a), digest(f)) in seen


def test_atari_dqn_smoke_run(tmp_path):
    cfg = compose_config(
        [
            "env=atari",
            "agent=dqn",
            "env.num_envs=2",
            "total_steps=600",
            "agent.learning_starts=300",
            "agent.buffer_size=2000",
            "agent.batch_size=4",
            "log.interval=100",
            "log.progress=false",
            f"run_dir={tmp_path}",
        ]
    )
    run = Run(cfg)
    assert run.train() == 0
    d = run.dir
    metrics = pd.read_csv(d / "metrics.csv")
    assert {"loss", "q_mean"} <= set(metrics["metric"]) and np.isfinite(metrics["value"]).all()
    assert (d / "done").exists()


def test_metrics_cover_every_update_of_a_step_and_keep_interval_hook_metrics():
    cfg = DQNConfig(buffer_size=1000, learning_starts=0, batch_size=4, updates_per_step=0.25)
    agent = DQN(
        cfg,
        EnvSpec((4, 10, 10), np.dtype(bool), 6, 8),
        Composition("reset", {"reset": {"interval": 16}}),
        torch.device("cpu"),
        0,
    )
    rng = np.random.default_rng(0)
    seen = []
    for t in range(1, 4):  # 8 envs x 0.25: two updates per agent step
        obs = rng.random((8, 4, 10, 10)) < 0.5
        seen.append(
            agent.observe(
                obs, rng.integers(6, size=8), np.ones(8), obs, np.zeros(8, bool), np.zeros(8, bool), t * 8
            )
        )
    assert agent.updates == 6
    assert [("reset_layers" in m) for m in seen] == [False, True, False]  # fired at step 16, kept
    assert all({"loss", "q_mean", "grad_norm"} <= set(m) for m in seen)


def linear(weight, bias=None):
    """A tiny network with fixed weights: Q(s) = W s (+ b)."""

    head = nn.Linear(len(weight[0]), len(weight), bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        if bias is not None:
            head.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return Network(torch.nn.Sequential(torch.nn.Flatten()), head)


def hand_made_replay(agent):
    """One env, gamma 0.5, 3-step returns; s_t = [t, 1, 0] and the action taken is t (its id).
    t=2 is truncated (true last obs [30, 1, 0]), t=4 terminates; t=6, 7 have no 3-step future."""
    rewards = {0: 1.0, 1: 2.0, 2: 4.0, 3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0, 7: 1.0}
    for t, r in rewards.items():
        nxt = [30.0 if t == 2 else t + 1.0, 1.0, 0.0]
        agent.replay.add(
            np.array([[t, 1.0, 0.0]], np.float32),
            [t],
            [r],
            np.array([nxt], np.float32),
            np.array([t == 4]),
            np.array([t == 2]),
        )
    batch = agent.replay.sample(400, np.random.default_rng(0))
    by_id = {int(a): i for i, a in enumerate(batch["actions"])}
    assert set(by_id) == {0, 1, 2, 3, 4, 5}
    return {k: torch.as_tensor(v) for k, v in batch.items()}, by_id


@pytest.mark.parametrize("double_dqn", [False, True])
def test_td_targets_by_hand_terminal_truncated_n_step_and_double(double_dqn):
    agent = DQN(
        DQNConfig(buffer_size=100, gamma=0.5, n_step=3, double_dqn=double_dqn),
        EnvSpec((3,), np.dtype(np.float32), 8, 1),
        Composition("none"),
        torch.device("cpu"),
        0,
    )
    agent.target = linear([[1, 0, 0], [0, 2, 0]] + [[0, 0, 0]] * 6)  # Q_target(s) = (s0, 2, 0, ...)
    agent.network = linear([[0, 1, 0], [1, 0, 0]] + [[0, 0, 0]] * 6)  # Q_online(s) = (1, s0, 0, ...)
    batch, by_id = hand_made_replay(agent)
    target = agent.td_target(batch)
    # plain: bootstrap max_a Q_target = s0; double: a* = argmax Q_online = 1 when s0 > 1, valued 2 by
    # the target
    bootstrap = (lambda s0: 2.0) if double_dqn else (lambda s0: s0)
    expected = {
        0: 1 + 0.5 * 2 + 0.25 * 4 + 0.125 * bootstrap(30),  # truncated at t=2: bootstraps from [30, 1, 0]
        1: 2 + 0.5 * 4 + 0.25 * bootstrap(30),
        2: 4 + 0.5 * bootstrap(30),
        3: 1 + 0.5 * 1,  # terminated at t=4: no bootstrap
        4: 1.0,
        5: 1 + 0.5 + 0.25 + 0.125 * bootstrap(8),
    }  # a full 3-step chain to s_8
    for t, value in expected.items():
        assert float(target[by_id[t]]) == pytest.approx(value), t


def test_td_target_and_loss_by_hand_with_a_two_hot_head():
    # atoms -10, -9, ..., 10
    comp = Composition("two_hot", {"two_hot": {"bins": 21, "v_min": -10, "v_max": 10}})
    agent = DQN(
        DQNConfig(buffer_size=100, gamma=0.5, n_step=3),
        EnvSpec((3,), np.dtype(np.float32), 8, 1),
        comp,
        torch.device("cpu"),
        0,
    )
    logits = np.zeros((8, 21))
    logits[0, 14], logits[1, 12] = 100, 100  # Q_target(., 0) = 4, Q_target(., 1) = 2, the others 0
    agent.target = linear(np.zeros((8 * 21, 3)).tolist(), logits.ravel().tolist())
    batch, by_id = hand_made_replay(agent)
    target = agent.td_target(batch)
    assert float(target[by_id[0]]) == pytest.approx(3 + 0.125 * 4) and float(
        target[by_id[3]]
    ) == pytest.approx(1.5)
    uniform = torch.zeros(1, 8 * 21)  # online logits: every atom equally likely
    loss = comp.value_head().loss(uniform, target[by_id[0]][None], torch.tensor([0]))
    q = comp.value_head().expected(uniform)[0, 0]
    assert float(loss) == pytest.approx(np.log(21)) and float(q) == pytest.approx(0.0, abs=1e-6)
    projected = comp.parts[0].project(target[by_id[0]][None], comp.value_head()._atoms(uniform))
    # 3.5
    assert projected[0, 13].item() == pytest.approx(0.5) and projected[0, 14].item() == pytest.approx(0.5)


def test_dqn_logs_the_fraction_of_clamped_targets():
    agent = make_dqn(4, "two_hot", reward_clip=False)
    rng = np.random.default_rng(0)
    obs = rng.random((4, 4, 10, 10)) < 0.5
    metrics = agent.observe(
        obs, np.zeros(4, int), np.full(4, 100.0), obs, np.zeros(4, bool), np.zeros(4, bool), 4
    )
    assert float(metrics["target_clamped_frac"]) == 1.0  # rewards of 100 on a [-10, 10] support


def test_polyak_target_updates_work_with_plasticity_injection():
    agent = make_dqn(4, "plasticity_injection", tau=0.5, target_update_interval=1)
    agent.interventions.parts[0].cfg.at = 8
    feed(agent, 4)  # injects at step 8, Polyak-averages every update
    assert bool(agent.network.active) and bool(agent.target.active)
    assert agent.target.active.dtype == torch.bool


def test_target_network_and_acting_run_in_eval_mode():
    agent = make_dqn(4, "spectral_norm")
    assert not agent.target.training and agent.network.training
    u = agent.network.body.fc2.parametrizations.weight[0]._u.clone()
    agent.act(np.random.default_rng(0).random((4, 4, 10, 10)) < 0.5, step=10**7)  # greedy
    assert torch.equal(agent.network.body.fc2.parametrizations.weight[0]._u, u)  # no power iteration
    ppo = make_ppo(2, "spectral_norm")
    u = ppo.network.body.fc2.parametrizations.weight[0]._u.clone()
    ppo.act(np.random.default_rng(0).random((2, 4, 10, 10)) < 0.5, step=0)
    assert torch.equal(ppo.network.body.fc2.parametrizations.weight[0]._u, u) and ppo.network.training
