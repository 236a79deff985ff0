"""Nonstationary RL (env.shift): each mechanism does what it says, tasks are logged, at_shift
interventions act at the switches, and a killed run resumes to the same CSVs."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_DQN, TINY_PPO, planned_run
from envs import MinAtarConfig, make_env
from envs.minatar import MinAtarEnv
from envs.shift import ShiftConfig
from runner.config import ConfigError, compose_config


def pair(kind, smooth=False, num_envs=2, interval=10, **shift):
    """(the shifting env, the same env without the shift), same seed."""
    cfg = MinAtarConfig(num_envs=num_envs, shift=ShiftConfig(kind=kind, interval=interval, smooth=smooth, **shift))
    return make_env(cfg, 0), make_env(dataclasses.replace(cfg, shift=ShiftConfig()), 0)


@pytest.mark.parametrize("smooth", [False, True])
def test_the_permuted_observation_is_a_permutation_of_the_real_one(smooth):
    shifted, plain = pair("obs_permutation", smooth)
    a, b = shifted.reset(seed=0)[0], plain.reset(seed=0)[0]
    rng = np.random.default_rng(0)
    permutations = []
    for _ in range(40):
        actions = rng.integers(6, size=2)
        a, _, _, _, info_a = shifted.step(actions)
        b, _, _, _, info_b = plain.step(actions)
        flat_a, flat_b = a.reshape(2, a.shape[1], -1), b.reshape(2, b.shape[1], -1)
        assert np.array_equal(flat_a, flat_b[:, :, shifted.permutation])  # the same for every channel
        assert sorted(shifted.permutation) == list(range(100))
        permutations.append(shifted.permutation.copy())
    changed = [not np.array_equal(p, q) for p, q in zip(permutations, permutations[1:])]
    assert sum(changed) == (39 if smooth else 8)  # smooth: moves every step; abrupt: at the 8 switches


@pytest.mark.parametrize("smooth, factors", [(False, [1, 3, 5, 5, 9]), (True, [2.6, 3.8, 5, 6.2, 9])])
def test_the_learned_reward_is_scaled_and_the_score_is_not(smooth, factors):
    shifted, plain = pair("reward_scale", smooth, num_envs=1, interval=5, growth=2.0)
    shifted.reset(seed=0)
    plain.reset(seed=0)
    seen = []
    for step in range(25):
        _, reward, _, _, info = shifted.step(np.array([1]))
        _, raw, _, _, _ = plain.step(np.array([1]))
        assert info["score"][0] == raw[0]
        seen.append(shifted.reward_factor())  # the factor of the next step (after step + 1 agent steps)
        if raw[0]:
            assert reward[0] == pytest.approx(raw[0] * (1 + 2.0 * (step / 5 if smooth else step // 5)))
    assert [seen[i] for i in (3, 6, 9, 12, 19)] == pytest.approx([f for f in factors])


def test_game_cycle_observations_come_from_the_right_game():
    env, _ = pair("game_cycle", num_envs=1, interval=3, games=["breakout", "seaquest", "freeway"])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, 10, 10, 10)
    for step in range(1, 10):
        obs, _, terminated, truncated, info = env.step(np.array([0]))
        game = ["breakout", "seaquest", "freeway"][(step // 3) % 3]
        channels = MinAtarEnv(MinAtarConfig(game=game), 0).single_observation_shape[0]
        assert env._inner.cfg.game == game and not obs[0, channels:].any()  # zero padding past its channels
        if step % 3 == 0:
            assert truncated[0] or terminated[0]  # the old game's episode ends at the switch


@pytest.mark.parametrize("agent, args", [("dqn", TINY_DQN), ("ppo", TINY_PPO)])
@pytest.mark.parametrize("kind, smooth", [("game_cycle", False), ("obs_permutation", False), ("obs_permutation", True),
                                          ("reward_scale", False), ("reward_scale", True)])
def test_tasks_are_logged_at_every_switch(run, tmp_path, agent, args, kind, smooth):
    overrides = [*args, f"env.shift.kind={kind}", f"env.shift.smooth={str(smooth).lower()}", "env.shift.interval=800",
                 "total_steps=3200", "agent.reward_clip=false"]
    run(*overrides)
    metrics = pd.read_csv(planned_run(*overrides, f"run_dir={tmp_path}") / "metrics.csv")
    tasks = metrics[metrics.metric == "task"]
    assert tasks.step.tolist() == [0, 800, 1600, 2400] and tasks.value.tolist() == [0, 1, 2, 3]


def test_at_shift_interventions_act_at_every_switch(run, tmp_path):
    overrides = [*TINY_DQN, "env.shift.kind=obs_permutation", "env.shift.interval=800", "intervention=reset",
                 "interventions.reset.at_shift=true"]
    run(*overrides)
    metrics = pd.read_csv(planned_run(*overrides, f"run_dir={tmp_path}") / "metrics.csv")
    assert metrics[metrics.metric == "reset_layers"].step.tolist() == [800, 1600]


def test_kind_none_changes_nothing(run, tmp_path):
    quiet = ["env.shift.interval=800", "env.shift.growth=3"]  # settings of a shift that is off
    run(*TINY_DQN, f"run_dir={tmp_path / 'a'}")
    run(*TINY_DQN, *quiet, f"run_dir={tmp_path / 'b'}")
    a, b = planned_run(*TINY_DQN, f"run_dir={tmp_path / 'a'}"), planned_run(*TINY_DQN, *quiet, f"run_dir={tmp_path / 'b'}")
    for name in ("returns.csv", "metrics.csv"):
        assert (a / name).read_bytes().replace(a.parent.name.encode(), b"") == \
            (b / name).read_bytes().replace(b.parent.name.encode(), b"")


@pytest.mark.parametrize("args, message", [
    (["env.shift.kind=drift"], "env.shift.kind='drift' is out of range: must be one of none, game_cycle"),
    (["env.shift.kind=game_cycle", "env.shift.games=[breakout,pong]"], "env.shift.games: unknown ['pong']"),
    (["env.shift.kind=obs_permutation", "env.shift.interval=0"], "env.shift.interval=0 is out of range: must be >= 1"),
    (["env.shift.kind=reward_scale", "env.shift.growth=-1", "agent.reward_clip=false"], "env.shift.growth=-1.0"),
    (["env.shift.kind=game_cycle", "env.shift.smooth=true"], "game_cycle has no smooth form"),
    (["env.shift.kind=reward_scale", "agent.reward_clip=true"], "set agent.reward_clip=false"),
    (["env=atari", "env.shift.kind=obs_permutation"], "implemented for MinAtar only"),
    (["intervention=redo", "interventions.redo.at_shift=true"], "at_shift=true needs task switches"),
])
def test_bad_shift_values_are_refused_before_a_run_starts(args, message):
    with pytest.raises(ConfigError, match=None) as raised:
        compose_config(args)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_task_visits_are_measured_against_the_first_visit_of_the_same_game():
    from analysis.continual import later_visit_ratios, visits

    ident = {"suite": "minatar", "game": "breakout", "agent": "ppo", "intervention": "none", "variant": "v", "seed": 0}
    runs = pd.DataFrame([{**ident, "shift_kind": "game_cycle", "shift_interval": 100, "shift_games": "a,b",
                          "last_step": 400}])
    # tasks: a (1..100), b (101..200), a (201..300), b (301..400); returns late in each visit: 4, 2, 1, 3
    episodes = [(70, 9.0), (90, 4.0), (190, 2.0), (280, 1.0), (300, 1.0), (390, 3.0), (310, 50.0)]
    returns = pd.DataFrame([{**ident, "step": s, "episode_return": r, "episode_length": 1} for s, r in episodes])
    table = visits(runs, returns)
    assert table.task_game.tolist() == ["a", "b", "a", "b"] and table.visit.tolist() == [0, 0, 1, 1]
    assert table.final_return.tolist() == [4.0, 2.0, 1.0, 3.0]  # steps 70 and 310 are early in their visits
    assert table.ratio.tolist() == [1.0, 1.0, 0.25, 1.5]
    later = later_visit_ratios(table).set_index("game").normalized_score
    assert later.to_dict() == {"a": 0.25, "b": 1.5}


def test_figures_read_gzipped_csvs_and_write_the_continual_table(run, tmp_path):
    import gzip
    import shutil

    from analysis.__main__ import main as figures

    overrides = [*TINY_PPO, "env.shift.kind=game_cycle", "env.shift.interval=1000", "env.shift.games=[breakout,asterix]"]
    run(*overrides)
    d = planned_run(*overrides, f"run_dir={tmp_path}")
    for name in ("returns.csv", "metrics.csv"):
        with open(d / name, "rb") as plain, gzip.open(d / f"{name}.gz", "wb") as packed:
            shutil.copyfileobj(plain, packed)
        (d / name).unlink()
    assert figures([str(tmp_path), str(tmp_path / "out"), "--reps", "20", "--curve-reps", "10", "--bins", "4"]) == 0
    table = pd.read_csv(tmp_path / "out" / "tables" / "continual.csv")
    assert table.task.tolist() == [0, 1, 2, 3] and table.task_game.tolist() == ["breakout", "asterix"] * 2
    assert (tmp_path / "out" / "minatar_ppo_continual_returns.png").exists()


def test_the_readme_continual_table_is_what_the_committed_csvs_give():
    """The README's result table is rebuilt from results/minatar_continual (gzipped CSVs) by the
    same code `make figures` runs (same bootstrap repetitions and seed)."""
    import re

    from analysis.continual import ratio_table, visits
    from analysis.load import load_runs
    from conftest import ROOT

    section = (ROOT / "README.md").read_text().split("### Result: PPO through the five MinAtar games", 1)[1]
    rows = re.findall(r"^\| (\w+) \| (\d) \| ([\d.]+) \[([\d.]+), ([\d.]+)\] \|", section, re.M)
    assert len(rows) >= 7
    runs = load_runs(ROOT / "results" / "minatar_continual")
    table = ratio_table(visits(runs.runs, runs.returns), reps=2000, seed=0)
    iqm = table[table.statistic == "iqm"].set_index("intervention")
    seeds = runs.runs.groupby("intervention").seed.nunique()
    for intervention, count, value, low, high in rows:
        assert int(count) == seeds[intervention]
        got = iqm.loc[intervention, ["value", "ci_low", "ci_high"]].to_numpy()
        assert np.allclose(got, [float(value), float(low), float(high)], atol=0.006), intervention


def test_the_readme_calibration_table_is_what_the_committed_csvs_give():
    """Every row of the README's calibration table (results/minatar_continual_calibration): the
    mean return over the last quarter of each task, as `make figures` writes it to
    tables/continual.csv."""
    import re

    from analysis.continual import visits
    from analysis.load import load_runs
    from conftest import ROOT

    section = (ROOT / "README.md").read_text().split("### Calibration: every setting tried", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (dqn|ppo) \| (\w+) \| `([^`]+)` \| (\d) \| ([\d. ]+) \|", section, re.M)
    runs = load_runs(ROOT / "results" / "minatar_continual_calibration")
    assert len(rows) == len(runs.runs) >= 6  # every committed run is in the table
    table = visits(runs.runs, runs.returns)
    for agent, game, variant, seed, returns in rows:
        mine = table[(table.agent == agent) & (table.game == game) & (table.variant == variant) & (table.seed == int(seed))]
        assert np.allclose(mine.sort_values("task").final_return, [float(x) for x in returns.split()], atol=0.051), variant
