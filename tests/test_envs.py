"""make_env: shapes, seeding, same-step autoreset with the true final observation."""

import numpy as np
import pytest
from minatar import Environment

from plasticity_bench.envs import AtariConfig, ClassicConfig, MinAtarConfig, UnknownChoice, make_env


def test_atari_shapes_and_dtypes():
    env = make_env(AtariConfig(game="Breakout", num_envs=2), seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, int))
    assert obs.shape == (2, 4, 84, 84) and reward.shape == (2,) and reward.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool and info["final_obs"].shape == obs.shape
    assert env.num_actions == 4  # minimal action set of Breakout


@pytest.mark.parametrize(
    "suite_cfg", [AtariConfig(num_envs=2), MinAtarConfig(num_envs=2), ClassicConfig(num_envs=2)]
)
def test_same_seed_same_observations(suite_cfg):
    def rollout(seed):
        env = make_env(suite_cfg, seed=seed)
        frames = [env.reset()[0]]
        for t in range(30):
            frames.append(env.step(np.full(2, t % env.num_actions))[0])
        return np.stack(frames)

    a, b = rollout(3), rollout(3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, rollout(4))


def test_atari_truncation_gives_true_final_obs_and_same_step_reset():
    env = make_env(AtariConfig(num_envs=2, max_episode_frames=40), seed=0)  # 10 agent steps
    obs, _ = env.reset()
    for t in range(10):
        prev = obs
        obs, reward, terminated, truncated, info = env.step(np.ones(2, int))
    assert truncated.all() and not terminated.any()
    final = info["final_obs"]
    np.testing.assert_array_equal(final[:, :3], prev[:, 1:])  # the last stack continues the episode
    assert (obs[:, 0] == obs[:, 3]).all()  # returned obs is a reset stack (one frame repeated)
    obs2, *_ = env.step(np.ones(2, int))
    np.testing.assert_array_equal(obs2[:, :3], obs[:, 1:])  # next step acts in the new episode


def test_minatar_batched_equals_single_environments():
    cfg = MinAtarConfig(game="space_invaders", num_envs=3)
    batched = make_env(cfg, seed=7)
    singles = [Environment("space_invaders", sticky_action_prob=0.1) for _ in range(3)]
    for i, e in enumerate(singles):
        e.seed(7 * 10_007 + i)
        e.reset()
    obs, _ = batched.reset()
    rng = np.random.default_rng(0)
    for _ in range(300):
        actions = rng.integers(6, size=3)
        obs, reward, terminated, truncated, info = batched.step(actions)
        for i, e in enumerate(singles):
            r, done = e.act(actions[i])
            assert reward[i] == r and terminated[i] == done
            np.testing.assert_array_equal(info["final_obs"][i], e.state().transpose(2, 0, 1))
            if done:
                e.reset()
            np.testing.assert_array_equal(obs[i], e.state().transpose(2, 0, 1))


def test_minatar_truncation():
    env = make_env(MinAtarConfig(game="freeway", num_envs=2, max_episode_steps=5), seed=0)
    env.reset()
    flags = [env.step(np.zeros(2, int))[3] for _ in range(5)]
    assert not any(f.any() for f in flags[:4]) and flags[4].all()


@pytest.mark.parametrize(
    "suite_cfg", [AtariConfig(game="NotAGame"), MinAtarConfig(game="pong"), ClassicConfig(game="Pendulum")]
)
def test_unknown_game_names_valid_ones(suite_cfg):
    with pytest.raises(UnknownChoice, match="valid: .*(Breakout|breakout|CartPole, Acrobot, LunarLander)"):
        make_env(suite_cfg, seed=0)


@pytest.mark.parametrize(
    "game, shape, actions", [("CartPole", (4,), 2), ("Acrobot", (6,), 3), ("LunarLander", (8,), 4)]
)
def test_classic_games_give_float32_vectors(game, shape, actions):
    env = make_env(ClassicConfig(game=game, num_envs=3), seed=0)
    obs, _ = env.reset()
    assert obs.shape == (3, *shape) and obs.dtype == np.float32 and env.num_actions == actions
    obs, reward, terminated, truncated, info = env.step(np.zeros(3, int))
    assert obs.dtype == np.float32 and reward.dtype == np.float32 and info["final_obs"].shape == obs.shape


def test_classic_episode_cap_truncates_with_the_true_final_obs_and_resets_in_the_same_step():
    # Acrobot: no early end
    env = make_env(ClassicConfig(game="Acrobot", num_envs=2, max_episode_steps=7), seed=0)
    obs, _ = env.reset()
    for _ in range(7):
        prev = obs
        obs, _, terminated, truncated, info = env.step(np.ones(2, int))
    assert truncated.all() and not terminated.any()
    assert not np.array_equal(info["final_obs"], obs)  # obs is the new episode's first observation
    assert np.abs(info["final_obs"] - prev).max() < 1.0  # the true last one continues the episode
    assert not env.step(np.ones(2, int))[3].any()  # the next step is the new episode's first


def test_classic_reset_interval_cuts_every_episode_in_progress_on_its_clock():
    # Acrobot: no early end
    env = make_env(ClassicConfig(game="Acrobot", num_envs=2, reset_interval=5), seed=0)
    env.reset()
    cut = [env.step(np.ones(2, int))[3].all() for _ in range(15)]
    assert [i + 1 for i, c in enumerate(cut) if c] == [5, 10, 15]
    env.load_state_dict({"steps": 3})  # a resumed run keeps the clock
    assert [env.step(np.ones(2, int))[3].all() for _ in range(2)] == [False, True]
