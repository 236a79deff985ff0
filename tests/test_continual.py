"""Nonstationary RL (env.shift): each mechanism does what it says, tasks are logged, at_shift
interventions act at the switches, and a killed run resumes to the same CSVs."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_DQN, TINY_PPO, planned_run
from plasticity_bench.envs import ClassicConfig, MinAtarConfig, make_env
from plasticity_bench.envs.minatar import MinAtarEnv
from plasticity_bench.envs.shift import ShiftConfig
from plasticity_bench.runner.config import ConfigError, compose_config


def pair(kind, smooth=False, num_envs=2, interval=10, **shift):
    """(the shifting env, the same env without the shift), same seed."""
    cfg = MinAtarConfig(
        num_envs=num_envs, shift=ShiftConfig(kind=kind, interval=interval, smooth=smooth, **shift)
    )
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
@pytest.mark.parametrize(
    "kind, smooth",
    [
        ("game_cycle", False),
        ("obs_permutation", False),
        ("obs_permutation", True),
        ("reward_scale", False),
        ("reward_scale", True),
    ],
)
def test_tasks_are_logged_at_every_switch(run, tmp_path, agent, args, kind, smooth):
    overrides = [
        *args,
        f"env.shift.kind={kind}",
        f"env.shift.smooth={str(smooth).lower()}",
        "env.shift.interval=800",
        "total_steps=3200",
        "agent.reward_clip=false",
    ]
    run(*overrides)
    metrics = pd.read_csv(planned_run(*overrides, f"run_dir={tmp_path}") / "metrics.csv")
    tasks = metrics[metrics.metric == "task"]
    assert tasks.step.tolist() == [0, 800, 1600, 2400] and tasks.value.tolist() == [0, 1, 2, 3]


def test_at_shift_interventions_act_at_every_switch(run, tmp_path):
    overrides = [
        *TINY_DQN,
        "env.shift.kind=obs_permutation",
        "env.shift.interval=800",
        "intervention=reset",
        "interventions.reset.at_shift=true",
    ]
    run(*overrides)
    metrics = pd.read_csv(planned_run(*overrides, f"run_dir={tmp_path}") / "metrics.csv")
    assert metrics[metrics.metric == "reset_layers"].step.tolist() == [800, 1600]


def test_kind_none_changes_nothing(run, tmp_path):
    quiet = ["env.shift.interval=800", "env.shift.growth=3"]  # settings of a shift that is off
    run(*TINY_DQN, f"run_dir={tmp_path / 'a'}")
    run(*TINY_DQN, *quiet, f"run_dir={tmp_path / 'b'}")
    a, b = (
        planned_run(*TINY_DQN, f"run_dir={tmp_path / 'a'}"),
        planned_run(*TINY_DQN, *quiet, f"run_dir={tmp_path / 'b'}"),
    )
    for name in ("returns.csv", "metrics.csv"):
        assert (a / name).read_bytes().replace(a.parent.name.encode(), b"") == (
            b / name
        ).read_bytes().replace(b.parent.name.encode(), b"")


@pytest.mark.parametrize(
    "args, message",
    [
        (["env.shift.kind=drift"], "env.shift.kind='drift' is out of range: must be one of none, game_cycle"),
        (
            ["env.shift.kind=game_cycle", "env.shift.games=[breakout,pong]"],
            "env.shift.games: unknown ['pong']",
        ),
        (
            ["env.shift.kind=obs_permutation", "env.shift.interval=0"],
            "env.shift.interval=0 is out of range: must be >= 1",
        ),
        (
            ["env.shift.kind=reward_scale", "env.shift.growth=-1", "agent.reward_clip=false"],
            "env.shift.growth=-1.0",
        ),
        (["env.shift.kind=game_cycle", "env.shift.smooth=true"], "game_cycle has no smooth form"),
        (["env.shift.kind=reward_scale", "agent.reward_clip=true"], "set agent.reward_clip=false"),
        (["env=atari", "env.shift.kind=obs_permutation"], "works on minatar only; valid on atari: none yet"),
        (
            ["env.shift.kind=obs_offset"],
            "works on classic only; valid on minatar: game_cycle, obs_permutation, reward_scale",
        ),
        (["env=classic", "env.shift.kind=obs_permutation"], "valid on classic: obs_offset, reward_scale"),
        (
            ["env=classic", "env.shift.kind=obs_offset", "env.shift.sigma=0"],
            "env.shift.sigma=0.0 is out of range: must be > 0",
        ),
        (
            ["env=classic", "env.game=Pendulum"],
            "unknown classic game 'Pendulum'; valid: CartPole, Acrobot, LunarLander",
        ),
        (
            ["env.shift.kind=game_cycle", "env.num_envs=3", "env.shift.interval=1000"],
            "env.shift.interval=1,000 must be a multiple of env.num_envs=3",
        ),
        (["env.shift.kind=game_cycle", "env.minimal_action_set=true"], "needs env.minimal_action_set=false"),
        (
            ["intervention=weight_clip", "interventions.weight_clip.kappa=0"],
            "interventions.weight_clip.kappa=0",
        ),
        (
            ["intervention=weight_clip_plasticity_injection"],
            "weight_clip and plasticity_injection cannot be composed",
        ),
        (["env=classic", "agent=ppo", "intervention=spectral_norm"], "cannot take crelu or spectral_norm"),
        (
            ["intervention=reset", "interventions.reset.layers=-1"],
            "interventions.reset.layers=-1 is out of range",
        ),
        (["intervention=redo", "interventions.redo.at_shift=true"], "at_shift=true needs task switches"),
    ],
)
def test_bad_shift_values_are_refused_before_a_run_starts(args, message):
    with pytest.raises(ConfigError, match=None) as raised:
        compose_config(args)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_task_visits_keep_the_first_visit_of_the_same_game_as_a_transfer_view():
    from plasticity_bench.analysis.continual import visits

    ident = {
        "suite": "minatar",
        "game": "breakout",
        "agent": "ppo",
        "intervention": "none",
        "variant": "v",
        "seed": 0,
    }
    runs = pd.DataFrame(
        [
            {
                **ident,
                "shift_kind": "game_cycle",
                "shift_interval": 100,
                "shift_games": "a,b",
                "last_step": 400,
                "total_steps": 400,
                "complete": True,
            }
        ]
    )
    # tasks: a (1..100), b (101..200), a (201..300), b (301..400); returns late in each visit: 4, 2, 1, 3
    episodes = [(70, 9.0), (90, 4.0), (190, 2.0), (280, 1.0), (300, 1.0), (390, 3.0), (310, 50.0)]
    returns = pd.DataFrame(
        [{**ident, "step": s, "episode_return": r, "episode_length": 1} for s, r in episodes]
    )
    table = visits(runs, returns)
    assert table.task_game.tolist() == ["a", "b", "a", "b"] and table.visit.tolist() == [0, 0, 1, 1]
    assert table.final_return.tolist() == [4.0, 2.0, 1.0, 3.0]  # steps 70 and 310 are early in their visits
    assert table.transfer_ratio.tolist() == [1.0, 1.0, 0.25, 1.5]


def test_figures_read_gzipped_csvs_and_write_the_continual_table(run, tmp_path):
    import gzip
    import shutil

    from plasticity_bench.analysis.__main__ import main as figures

    overrides = [
        *TINY_PPO,
        "env.shift.kind=game_cycle",
        "env.shift.interval=1000",
        "env.shift.games=[breakout,asterix]",
    ]
    run(*overrides)
    d = planned_run(*overrides, f"run_dir={tmp_path}")
    for name in ("returns.csv", "metrics.csv"):
        with open(d / name, "rb") as plain, gzip.open(d / f"{name}.gz", "wb") as packed:
            shutil.copyfileobj(plain, packed)
        (d / name).unlink()
    assert (
        figures([str(tmp_path), str(tmp_path / "out"), "--reps", "20", "--curve-reps", "10", "--bins", "4"])
        == 0
    )
    tables = tmp_path / "out" / "tables"
    table = pd.read_csv(tables / "continual.csv")
    assert table.task.tolist() == [0, 1, 2, 3] and table.task_game.tolist() == ["breakout", "asterix"] * 2
    assert {"fresh_return", "vs_fresh", "transfer_ratio"} <= set(table.columns)
    # a run that cycles games: its average return per game, never over raw scores of two games
    assert sorted(pd.read_csv(tables / "continual_runs.csv").game) == ["asterix", "breakout"]
    assert (tmp_path / "out" / "minatar_ppo_continual_returns.png").exists()
    assert not (tables / "final_scores.csv").exists()  # a continual run is not scored as a breakout run


def test_bad_continual_values_exit_2_and_create_nothing(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    for args in (
        ["env=classic", "env.shift.kind=obs_offset", "env.shift.sigma=-1"],
        ["env=classic", "env.num_envs=3", "env.shift.kind=obs_offset", "env.shift.interval=1000"],
        ["env=minatar", "env.shift.kind=obs_offset"],
        ["env=classic", "env.game=Pong"],
        ["env=classic", "intervention=weight_clip", "interventions.weight_clip.kappa=-2"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "plasticity_bench", "run", f"run_dir={tmp_path}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (
            result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        ), args
        assert not any(tmp_path.iterdir()), args


@pytest.mark.parametrize(
    "kind, start_of",
    [
        ("obs_permutation", lambda env: env.permutation.copy()),
        ("obs_offset", lambda env: env.current_offset().copy()),
        ("reward_scale", lambda env: env.reward_factor()),
    ],
)
def test_every_shift_starts_unshifted_and_smooth_moves_from_one_task_to_the_next(kind, start_of):
    """One convention for every kind: task 0 is the unshifted env; during task t the smooth form moves
    from task t's abrupt value to task t + 1's, reached at the switch."""

    def make(smooth):
        cfg = (ClassicConfig if kind == "obs_offset" else MinAtarConfig)(
            num_envs=1, shift=ShiftConfig(kind=kind, interval=4, smooth=smooth)
        )
        env = make_env(cfg, 0)
        env.reset(seed=0)
        return env

    abrupt, smooth = make(False), make(True)
    values = {"abrupt": [start_of(abrupt)], "smooth": [start_of(smooth)]}  # before step 1: task 0
    for _ in range(12):
        for name, env in (("abrupt", abrupt), ("smooth", smooth)):
            env.step(np.array([0]))
            values[name].append(start_of(env))
    same = lambda a, b: np.allclose(a, b)  # noqa: E731
    unshifted = np.arange(100) if kind == "obs_permutation" else 0.0 if kind == "obs_offset" else 1.0
    assert same(values["abrupt"][0], unshifted) and same(values["smooth"][0], unshifted)
    for step in (4, 8, 12):  # at every switch the smooth walk has arrived where the abrupt one jumps
        assert same(values["smooth"][step], values["abrupt"][step])
        assert not same(values["abrupt"][step], values["abrupt"][step - 1])
    assert not same(values["smooth"][2], values["abrupt"][2])  # and in between it is on its way


def test_offsets_are_drawn_from_the_seed_and_the_task_alone():
    def offsets(seed, agent_draws):
        env = make_env(
            ClassicConfig(num_envs=2, shift=ShiftConfig(kind="obs_offset", interval=10, sigma=2.0)), seed
        )
        obs, _ = env.reset(seed=seed)
        rng, seen = np.random.default_rng(agent_draws), []
        for _ in range(40):
            obs, _, _, _, info = env.step(rng.integers(2, size=2))
            seen.append(env.current_offset().copy())
        return np.unique(np.stack(seen), axis=0), env

    a, env = offsets(0, agent_draws=1)
    b, _ = offsets(0, agent_draws=2)  # another agent acting differently sees the same tasks
    # 80 agent steps, a task every 10 and not np.array_equal(a, offsets(1, 1)[0])
    assert len(a) == 9 and np.array_equal(a, b)
    assert 0.5 < np.std(np.concatenate([env.offset(t) for t in range(1, 40)])) < 4  # N(0, 2^2) per dimension
    plain = make_env(ClassicConfig(num_envs=2), 0)
    shifted = make_env(ClassicConfig(num_envs=2, shift=ShiftConfig(kind="obs_offset", interval=10)), 0)
    x, y = plain.reset(seed=0)[0], shifted.reset(seed=0)[0]
    assert np.array_equal(x, y)  # task 0: d_0 = 0
    for step in range(1, 25):
        x = plain.step(np.ones(2, int))[0]
        y = shifted.step(np.ones(2, int))[0]
        assert shifted.task == 2 * step // 10
        np.testing.assert_allclose(y, x + shifted.offset(shifted.task), rtol=0, atol=1e-6)


def test_probes_at_a_switch_measure_the_network_before_an_at_shift_intervention_acts(monkeypatch, tmp_path):
    """The probe row of a switch step is the network that learned the task that ends: a reset of
    every layer at the switch comes after it."""
    from plasticity_bench.interventions import Composition
    from plasticity_bench.probes import Prober
    from plasticity_bench.runner.loop import Run

    calls = []
    monkeypatch.setattr(Prober, "__call__", lambda self, agent: calls.append("probe") or [])
    overrides = [
        *TINY_PPO,
        "env.shift.kind=obs_permutation",
        "env.shift.interval=800",
        "total_steps=1600",
        "probe.interval=800",
        "intervention=reset",
        "interventions.reset.at_shift=true",
        "interventions.reset.layers=0",
        f"run_dir={tmp_path}",
    ]
    real_on_shift = Composition.on_shift
    monkeypatch.setattr(
        Composition, "on_shift", lambda self, agent: calls.append("on_shift") or real_on_shift(self, agent)
    )
    assert Run(compose_config(overrides)).train() == 0
    assert calls == ["probe", "on_shift", "probe"]


@pytest.mark.parametrize("agent_name, args", [("dqn", TINY_DQN), ("ppo", TINY_PPO)])
def test_reset_of_every_layer_is_a_fresh_agent(agent_name, args):
    """layers=0: every parameter re-initialised (as a new network of the same seed stream would
    be), the target network with it, and a new optimizer: no moments, step count 0."""
    import torch
    from omegaconf import OmegaConf

    from plasticity_bench import agents
    from plasticity_bench.agents.base import EnvSpec
    from plasticity_bench.interventions import Composition
    from plasticity_bench.nets.networks import reinitialised

    cfg = compose_config(
        [
            *args,
            "intervention=reset",
            "interventions.reset.at_shift=true",
            "interventions.reset.layers=0",
            "env.shift.kind=obs_permutation",
            "env.shift.interval=800",
        ]
    )
    composition = Composition(cfg.intervention, cfg.interventions)
    agent = agents.AGENTS[agent_name](
        OmegaConf.to_object(cfg.agent),
        EnvSpec((4, 10, 10), np.dtype(bool), 6, 4),
        composition,
        torch.device("cpu"),
        0,
    )
    inputs = torch.rand(16, 4, 10, 10) > 0.5
    for _ in range(3):  # a trained network and an optimizer with state
        agent.optimizer.zero_grad()
        agent.network(inputs).pow(2).mean().backward()
        agent.optimizer.step()
    before = {n: p.detach().clone() for n, p in agent.network.named_parameters()}
    old_optimizer = agent.optimizer
    torch.manual_seed(5)
    expected = reinitialised(agent.network).state_dict()
    torch.manual_seed(5)
    # conv1, fc2, head: every layer of the MinAtar CNN
    assert composition.on_shift(agent)["reset_layers"] == 3
    for name, param in agent.network.named_parameters():
        assert not torch.equal(param, before[name]) and torch.equal(param, expected[name]), name
    assert agent.optimizer is not old_optimizer and not agent.optimizer.state
    assert all(p is q for p, q in zip(agent.optimizer.param_groups[0]["params"], agent.network.parameters()))
    if agent.target is not None:
        for p, q in zip(agent.target.parameters(), agent.network.parameters()):
            assert torch.equal(p, q)


@pytest.mark.parametrize(
    "experiment",
    [
        "minatar_continual",
        "minatar_continual_rerun",
        pytest.param("classic_continual", marks=pytest.mark.slow),  # the same code on other CSVs: 30 s
        pytest.param("minatar_continual_calibration", marks=pytest.mark.slow),
    ],
)
def test_the_committed_continual_tables_are_what_the_csvs_give(experiment):
    """results/<experiment>/figures/tables/continual.md is rebuilt from the committed CSVs by the code
    `make figures` runs (tests/test_docs.py checks that the pages hold it)."""
    from conftest import ROOT
    from plasticity_bench.analysis.continual import tables
    from plasticity_bench.analysis.load import load_runs

    committed = (ROOT / "results" / experiment / "figures" / "tables" / "continual.md").read_text()
    assert tables(load_runs(ROOT / "results" / experiment), reps=2000, seed=0)["markdown"] == committed


@pytest.mark.parametrize("policy, kept", [("keep", 1600), ("clear", 800)])
def test_dqn_keeps_or_clears_its_replay_at_a_switch(tmp_path, policy, kept):
    from plasticity_bench.runner.loop import Run

    overrides = [
        *TINY_DQN,
        "total_steps=1600",
        "env.shift.kind=obs_permutation",
        "env.shift.interval=800",
        f"agent.replay_at_shift={policy}",
        f"run_dir={tmp_path}",
    ]
    run = Run(compose_config(overrides))
    assert run.train() == 0 and len(run.agent.replay) == kept
    metrics = pd.read_csv(run.dir / "metrics.csv")
    assert metrics[metrics.metric == "loss"].step.max() == 1600  # it learns again after the switch


def observe_steps(agent, steps, start, num_envs=4) -> dict:
    """``steps`` agent steps of random transitions from agent step ``start``; the metrics of the
    last observe that updated ({} if none did)."""
    rng, last = np.random.default_rng(start), {}
    for t in range(steps):
        obs, nxt = rng.random((2, num_envs, 4, 10, 10)) < 0.5
        zeros = np.zeros(num_envs, bool)
        metrics = agent.observe(
            obs,
            rng.integers(6, size=num_envs),
            np.ones(num_envs),
            nxt,
            zeros,
            zeros,
            start + (t + 1) * num_envs,
        )
        last = metrics or last
    return last


def fresh_capable_dqn(intervention: str, **overrides):
    from conftest import make_dqn
    from plasticity_bench.interventions import Composition

    agent = make_dqn(**overrides)
    agent.interventions = Composition(
        intervention, compose_config(["interventions.reset.layers=0"]).interventions
    )
    return agent


def test_a_dqn_fresh_agent_explores_and_waits_for_learning_starts_from_the_switch():
    """reset with layers=0 on DQN is a new agent: epsilon back at its start value, learning_starts
    counted from the switch, an empty replay, and epsilon logged with every update."""
    agent = fresh_capable_dqn("reset", learning_starts=40, exploration_steps=400, epsilon_end=0.1)
    metrics = observe_steps(agent, 100, start=0)  # agent steps 4 .. 400: epsilon decays to 0.1
    assert float(metrics["epsilon"]) == pytest.approx(0.1)
    old_replay = agent.replay
    agent.interventions.parts[0].apply(agent)  # what on_shift does at a switch
    assert agent.replay is not old_replay and agent.refilling
    assert agent.epsilon(400) == 1.0 and agent.epsilon(600) == pytest.approx(1.0 - 0.9 * 200 / 400)
    assert observe_steps(agent, 9, start=400) == {}  # 36 steps since the switch < learning_starts
    metrics = observe_steps(agent, 3, start=436)
    assert float(metrics["epsilon"]) == pytest.approx(1.0 - 0.9 * 48 / 400)


def test_a_fresh_agent_re_anchors_l2init_and_the_probes():
    import torch

    from plasticity_bench.probes import ProbeConfig, Prober

    agent = fresh_capable_dqn("reset_l2init")
    prober = Prober(ProbeConfig(), agent.network, 0)
    observe_steps(agent, 5, start=0)
    l2init = agent.interventions.parts[1]
    first = {n: t.clone() for n, t in l2init.initial.items()}
    agent.interventions.parts[0].apply(agent)
    new_init = {n: p.detach().clone() for n, p in agent.network.named_parameters()}
    assert agent.restarts == 1 and prober.restarts == 0
    prober.restarted(agent.network, agent.restarts)  # (the runner does this after the step)
    observe_steps(agent, 1, start=20)
    assert all(torch.equal(l2init.initial[n], new_init[n]) for n in new_init)
    assert all(torch.equal(prober.initial[n], new_init[n]) for n in new_init)
    assert not all(torch.equal(first[n], new_init[n]) for n in new_init)
