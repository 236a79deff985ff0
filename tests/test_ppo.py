"""PPO: GAE on a hand-computed case, truncation bootstrapping, the loss pieces on a fixed batch,
and an exact checkpoint round-trip in the middle of a rollout."""

import copy
import math

import numpy as np
import pytest
import torch

from conftest import make_ppo
from plasticity_bench.agents.rollout import gae

GAMMA, LAM = 0.9, 0.5


def test_gae_matches_a_hand_computed_case_with_a_terminal_and_a_truncated_step():
    # one env, 3 steps: step 1 terminates; step 2 was truncated, so its reward already holds
    # gamma x V(final obs) (what PPO.observe adds) and the chain is cut there too
    rewards = torch.tensor([[1.0], [2.0], [0.5 + GAMMA * 4.0]])
    values = torch.tensor([[0.5], [1.0], [2.0]])
    dones = torch.tensor([[0.0], [1.0], [1.0]])
    next_value = torch.tensor([10.0])  # cut off by the last done: must not matter
    adv = gae(rewards, values, dones, next_value, GAMMA, LAM)
    a2 = 0.5 + GAMMA * 4.0 - 2.0
    a1 = 2.0 - 1.0
    d0 = 1.0 + GAMMA * 1.0 - 0.5
    a0 = d0 + GAMMA * LAM * a1
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([a0, a1, a2]))
    # without any done, the last step bootstraps from next_value
    adv = gae(rewards[:1], values[:1], torch.zeros(1, 1), torch.tensor([3.0]), GAMMA, LAM)
    torch.testing.assert_close(adv, torch.tensor([[1.0 + GAMMA * 3.0 - 0.5]]))


def random_obs(rng, n=2):
    return rng.random((n, 4, 10, 10)) < 0.5


def test_truncation_bootstraps_from_the_true_final_observation_and_termination_does_not():
    agent, rng = make_ppo(gamma=GAMMA, reward_clip=False), np.random.default_rng(0)
    obs, final = random_obs(rng), random_obs(rng)
    actions = agent.act(obs, 0)
    terminated, truncated = np.array([True, False]), np.array([False, True])
    agent.observe(obs, actions, np.array([1.0, 1.0]), final, terminated, truncated, 2)
    v_final = agent.value(final)
    torch.testing.assert_close(agent.rollout.rewards[0], torch.tensor([1.0, 1.0 + GAMMA * float(v_final[1])]))
    assert agent.rollout.dones[0].tolist() == [1.0, 1.0]


def test_loss_pieces_on_a_fixed_batch():
    torch.manual_seed(0)
    agent = make_ppo(clip_coef=0.2, norm_adv=False, ent_coef=0.0, vf_coef=0.0, max_grad_norm=0)
    obs = torch.as_tensor(random_obs(np.random.default_rng(1), 4))
    with torch.no_grad():
        logits, value, critic = agent.policy_and_value(obs)
    actions = torch.tensor([0, 1, 2, 0])
    logp = torch.log_softmax(logits, 1).gather(1, actions[:, None]).squeeze(1)
    # rollout log-probs chosen so that the ratios are 1.5, 0.5, 1.0, 1.1 against advantages +, -, +, -
    ratios = torch.tensor([1.5, 0.5, 1.0, 1.1])
    adv = torch.tensor([1.0, -2.0, 0.5, -1.0])
    returns = value + torch.tensor([1.0, -1.0, 0.05, 0.0])
    mb = {
        "obs": obs,
        "actions": actions,
        "logprobs": logp - ratios.log(),
        "advantages": adv,
        "returns": returns,
        "values": value.clone(),
    }
    metrics = agent.minibatch_update(mb, step=0)[0]
    # clipped surrogate: min(r A, clip(r) A) per sample: 1.2*1, 0.8*-2 (clip binds), 1.0*0.5, 1.1*-1
    expected = -torch.tensor([1.2 * 1.0, 0.8 * -2.0, 1.0 * 0.5, 1.1 * -1.0]).mean()
    assert float(metrics["policy_loss"]) == pytest.approx(float(expected), abs=1e-5)
    # value clipping: the prediction equals the rollout value, so the clipped and plain errors agree
    assert float(metrics["value_loss"]) == pytest.approx(
        0.5 * float(((value - returns) ** 2).mean()), abs=1e-5
    )
    assert float(metrics["clip_frac"]) == pytest.approx(0.5)  # 1.5 and 0.5 are outside [0.8, 1.2]
    # entropy: uniform logits give log(num_actions)
    uniform = -(torch.full((1, 3), 1 / 3) * torch.full((1, 3), 1 / 3).log()).sum()
    assert float(uniform) == pytest.approx(math.log(3))
    assert 0 < float(metrics["entropy"]) <= math.log(3) + 1e-6


def test_value_clipping_limits_how_far_an_update_can_move_the_value():
    agent = make_ppo(clip_coef=0.1)
    value = torch.tensor([0.0, 0.0])
    mb = {"values": torch.tensor([0.0, 0.0]), "returns": torch.tensor([1.0, 1.0])}
    moved = torch.tensor([0.5, -0.5])  # moved towards and away from the return, beyond the clip
    loss = agent.value_loss(moved[:, None], mb)
    # towards: max(0.5^2, (0.1-1)^2) = 0.81; away: max(1.5^2, (-0.1-1)^2) = 2.25
    assert float(loss) == pytest.approx(0.5 * (0.81 + 2.25) / 2)
    assert float(agent.value_loss(value[:, None], mb)) == pytest.approx(0.5)


def play(agent, rng, steps, start=0):
    n = agent.num_envs
    obs, metrics = random_obs(rng, n), []
    for t in range(steps):
        actions = agent.act(obs, start + t * n)
        nxt = random_obs(rng, n)
        done = rng.random(n) < 0.2
        metrics.append(
            agent.observe(obs, actions, rng.random(n), nxt, done, np.zeros(n, bool), start + (t + 1) * n)
        )
        obs = nxt
    return metrics


def test_checkpoint_mid_rollout_resumes_exactly():
    agent = make_ppo()
    play(agent, np.random.default_rng(0), 6)  # one update after 4 steps, then 2 rows of the next rollout
    assert agent.rollout.t == 2 and agent.updates == 4
    state = copy.deepcopy(agent.state_dict())
    resumed = make_ppo()
    resumed.load_state_dict(state)
    a = play(agent, np.random.default_rng(1), 7, start=12)
    b = play(resumed, np.random.default_rng(1), 7, start=12)
    assert [sorted(m) for m in a] == [sorted(m) for m in b] and any(a)
    for x, y in zip(a, b):
        for key in x:
            assert torch.equal(torch.as_tensor(x[key]), torch.as_tensor(y[key])), key
    for (name, p), q in zip(agent.network.named_parameters(), resumed.network.parameters()):
        assert torch.equal(p, q), name


def test_probe_inputs_come_from_the_latest_rollout():
    agent = make_ppo()
    assert agent.probe_inputs(8, np.random.default_rng(0)) is None
    play(agent, np.random.default_rng(0), 3)
    batch = agent.probe_inputs(8, np.random.default_rng(0))
    rows = agent.rollout.obs[:3].flatten(0, 1)
    assert batch.shape == (8, 4, 10, 10) and all((rows == x).all((1, 2, 3)).any() for x in batch)


def test_a_categorical_critic_trains_with_two_hot():
    agent = make_ppo(intervention="two_hot")
    assert agent.network.head.out_features == 3 + 51
    metrics = [m for m in play(agent, np.random.default_rng(0), 4) if m]
    assert metrics and torch.isfinite(metrics[0]["value_loss"])


def test_minibatches_must_divide_the_rollout():
    with pytest.raises(ValueError, match="num_minibatches"):
        make_ppo(num_envs=3, num_steps=5, num_minibatches=2)


def test_a_resume_seam_cuts_the_rollout_and_bootstraps_from_the_last_observation():
    agent = make_ppo(2, gamma=GAMMA)
    agent.truncate(random_obs(np.random.default_rng(9)))  # nothing stored yet: nothing to cut
    rng = np.random.default_rng(0)
    obs = random_obs(rng)
    for t in range(2):
        nxt = random_obs(rng)
        agent.observe(
            obs, agent.act(obs, 2 * t), np.ones(2), nxt, np.zeros(2, bool), np.zeros(2, bool), 2 * t + 2
        )
        obs = nxt
    rewards = agent.rollout.rewards[1].clone()
    agent.truncate(obs)
    torch.testing.assert_close(agent.rollout.rewards[1], rewards + GAMMA * agent.value(obs))
    assert agent.rollout.dones[1].tolist() == [1.0, 1.0] and agent.rollout.dones[0].tolist() == [
        0.0,
        0.0,
    ]


def test_the_discounted_value_target_bootstraps_only_where_an_episode_or_the_rollout_ends():
    from plasticity_bench.agents.rollout import gae

    rewards, dones = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[0.0], [1.0], [0.0]])
    target = gae(rewards, torch.zeros_like(rewards), dones, torch.tensor([10.0]), 0.5, 1.0)
    assert target.flatten().tolist() == [1 + 0.5 * 2, 2, 3 + 0.5 * 10]
