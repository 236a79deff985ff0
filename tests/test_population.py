"""``population=K``: the seeds of one config in one process (runner/population.py, runner/stacked.py)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import (
    ROOT,
    TINY_DQN,
    TINY_PPO,
    feed,
    find_run,
    fires_often,
    make_dqn,
    planned_run,
    runner_cmd,
    start_run,
)
from plasticity_bench.interventions import INTERVENTIONS
from plasticity_bench.runner.config import compose_config
from plasticity_bench.runner.loop import Run
from plasticity_bench.runner.population import Population, own_rng
from plasticity_bench.runner.stacked import StackedLearning
from plasticity_bench.runner.store import RunError

REDO = [*TINY_DQN, "intervention=redo", "interventions.redo.interval=500"]


def train(args, root, seed=0, population=1, kernel="auto") -> None:
    cfg = compose_config(
        [*args, f"run_dir={root}", f"seed={seed}", f"population={population}", f"population_kernel={kernel}"]
    )
    assert (Population(cfg) if population > 1 else Run(cfg)).train() == 0


def rows(root, name, seed, agent="dqn", intervention="redo") -> bytes:
    return (find_run(root, agent=agent, intervention=intervention, seed=seed) / name).read_bytes()


@pytest.fixture(scope="module")
def separate(tmp_path_factory) -> Path:
    """Three separate tiny DQN + ReDo runs, seeds 0, 1, 2."""
    root = tmp_path_factory.mktemp("separate")
    for seed in range(3):
        train(REDO, root, seed)
    return root


def test_a_population_writes_the_run_directories_of_its_seeds(separate, tmp_path):
    train(REDO, tmp_path, seed=1)  # run alone before: the population skips it
    train(REDO, tmp_path, population=3, kernel="loop")
    for seed in range(3):
        for name in ("metrics.csv", "returns.csv", "done"):
            assert rows(tmp_path, name, seed) == rows(separate, name, seed), (seed, name)
        config = rows(tmp_path, "config.yaml", seed).decode().replace(str(tmp_path), "ROOT")
        assert config == rows(separate, "config.yaml", seed).decode().replace(str(separate), "ROOT")
    metrics = pd.read_csv(find_run(tmp_path, intervention="redo", seed=2) / "metrics.csv")
    assert "redo_dormant_frac" in set(metrics["metric"]) or metrics["metric"].str.startswith("redo").any()


@pytest.mark.parametrize("kernel", ["loop", "stacked"])
def test_a_ppo_population_trains_each_seed_as_its_separate_run(tmp_path, kernel):
    """PPO samples its actions with each seed's RNG and keeps torch's per seed: with the loop
    kernel its CSVs are the separate runs'; with the stacked one its training rows agree to 1e-4
    and its returns until an action differs (a near tie of Gumbel-max sampling)."""
    args = [*TINY_PPO, "intervention=ln_l2"]
    train(args, tmp_path / "population", population=2, kernel=kernel)
    for seed in range(2):
        train(args, tmp_path / "separate", seed)
        mine, theirs = (
            rows(tmp_path / root, "returns.csv", seed, "ppo", "ln_l2") for root in ("population", "separate")
        )
        if kernel == "loop":
            assert mine == theirs
            assert rows(tmp_path / "population", "metrics.csv", seed, "ppo", "ln_l2") == rows(
                tmp_path / "separate", "metrics.csv", seed, "ppo", "ln_l2"
            )
            continue
        same = next(
            (i for i, (a, b) in enumerate(zip(mine.splitlines(), theirs.splitlines())) if a != b), None
        )
        assert same is None or same > 100, f"seed {seed}: returns differ from line {same}"
        ours, separate = (
            pd.read_csv(
                find_run(tmp_path / root, agent="ppo", intervention="ln_l2", seed=seed) / "metrics.csv"
            )
            for root in ("population", "separate")
        )
        assert ours[["step", "metric"]].equals(separate[["step", "metric"]])
        early = ours["metric"].isin(["loss", "value_loss", "grad_norm"]) & (ours["step"] <= 2000)
        np.testing.assert_allclose(ours["value"][early], separate["value"][early], rtol=1e-4)


def test_the_stacked_kernel_trains_each_seed_as_its_separate_run_does(separate, tmp_path):
    """Batched kernels round differently (a batched matrix product, a grouped convolution): the
    training metrics agree to 1e-5 relative and the returns until the first action that differs."""
    train(REDO, tmp_path, population=3, kernel="stacked")
    for seed in range(3):
        ours = pd.read_csv(find_run(tmp_path, intervention="redo", seed=seed) / "metrics.csv")
        theirs = pd.read_csv(find_run(separate, intervention="redo", seed=seed) / "metrics.csv")
        assert ours[["step", "metric"]].equals(theirs[["step", "metric"]])
        np.testing.assert_allclose(ours["value"], theirs["value"], rtol=1e-5, atol=1e-8)
        ours, theirs = (rows(root, "returns.csv", seed).splitlines() for root in (tmp_path, separate))
        same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        assert same > len(theirs) // 2, f"seed {seed}: returns differ from episode {same} of {len(theirs)}"


@pytest.mark.slow  # (14 x 3 short runs: about 80 s)
@pytest.mark.parametrize(
    "intervention", ["none", *sorted(n for n, cls in INTERVENTIONS.items() if cls.stacks), "ln_l2"]
)
def test_the_stacked_kernel_takes_every_intervention(tmp_path, intervention):
    """Each family whose network runs under vmap, its hooks firing often, in a stacked population
    of 2: the rows of each seed are its separate run's, and their values agree while rounding
    has not grown."""
    args = [
        "agent=dqn",
        f"intervention={intervention}",
        "total_steps=800",
        "log.interval=100",
        "env.num_envs=2",
        *fires_often(),
        "agent.learning_starts=100",
        "agent.batch_size=4",
        "agent.buffer_size=500",
        "agent.tau=0.5",
        "agent.target_update_interval=50",
        *TINY_DQN[-6:],  # no progress bar, 1 thread, probes
    ]
    train(args, tmp_path / "population", population=2, kernel="stacked")
    for seed in range(2):
        train(args, tmp_path / "separate", seed)
        ours, theirs = (
            pd.read_csv(find_run(tmp_path / root, intervention=intervention, seed=seed) / "metrics.csv")
            for root in ("population", "separate")
        )
        assert ours[["step", "metric"]].equals(theirs[["step", "metric"]])
        # up to step 200 (100 updates): the training rows within 1e-5. Later the
        # rounding of the batched kernels grows, as a chaotic system's does (measured: ln's seed
        # 0 reaches 2e-2 at step 800 while its updates alone, on the same batches, stay within
        # 5e-7 of the separate run's: test above), and the probes count units across
        # thresholds and take condition numbers, which any kernel change moves
        early = ours["metric"].isin(["loss", "q_mean", "grad_norm"]) & (ours["step"] <= 200)
        np.testing.assert_allclose(ours["value"][early], theirs["value"][early], rtol=1e-5, atol=1e-8)
        assert np.isfinite(ours["value"]).all()


def members(agents):
    """What the stacked kernel reads of a population's members; each with its own torch RNG
    (a surgery re-initialises weights from it)."""
    return [
        types.SimpleNamespace(
            agent=a, torch_rng=torch.Generator().manual_seed(k).get_state(), device=a.device
        )
        for k, a in enumerate(agents)
    ]


@pytest.mark.parametrize(
    "intervention, overrides",
    [
        ("none", {}),
        ("ln_l2", {"max_grad_norm": 1.0}),  # a gradient term and clipping per seed
        ("redo", {"optimizer": "rmsprop", "optimizer_eps": 0.01}),  # a surgery on each seed's slice
        ("plasticity_injection", {}),  # the network changes shape: the stack is built again
        ("l2init", {"optimizer": "rmsprop", "optimizer_eps": 0.01}),  # each seed's own theta_0
        ("two_hot", {}),  # a categorical head
    ],
)
def test_stacked_updates_give_each_seed_the_parameters_of_its_own_updates(intervention, overrides):
    """200 updates on the same batches, each seed on its own and the three as one stacked model:
    each tensor within 1e-5 of its own (relative, in norm). Adam's step divides by the root of the
    squared gradient's average, so the rounding of a gradient near 0 moves its weight by up to a
    learning rate: elementwise the difference can be larger."""
    agents = []
    for seed in range(3):
        torch.manual_seed(seed)
        agent = make_dqn(intervention=intervention, learning_starts=10**9, **overrides)
        agent.rng = np.random.default_rng(seed)
        feed(agent, 50)
        agents.append(agent)
    if intervention == "redo":
        for agent in agents:
            agent.interventions.parts[0].cfg.interval = 200  # fires at steps 200, 400, ...
    if intervention == "plasticity_injection":
        for agent in agents:
            agent.interventions.parts[0].cfg.at = 300
    alone = members(copy.deepcopy(agents))
    stacked = StackedLearning(members(agents), own_rng)
    for update in range(1, 201):
        step = 200 + 4 * update
        for member in alone:
            with own_rng(member):
                member.agent.update(step)
        stacked.update(stacked.members, step)
    for seed, (ours, theirs) in enumerate(zip(agents, (m.agent for m in alone))):
        mine, single = ours.network.state_dict(), theirs.network.state_dict()
        assert mine.keys() == single.keys()
        worst = {
            name: ((mine[name] - single[name]).norm() / single[name].norm().clamp_min(1e-12)).item()
            for name in single
            if single[name].is_floating_point()
        }
        assert max(worst.values()) < 1e-5, f"seed {seed}: relative difference per tensor {worst}"
        for name, tensor in mine.items():  # each seed's tensors are still views of the stack
            assert tensor.untyped_storage().nbytes() >= 3 * tensor.numel() * tensor.element_size() or (
                name.endswith("active") or tensor.dim() == 0
            ), name


@pytest.mark.parametrize(
    "agent, kernel",
    [("dqn", "loop"), ("dqn", "stacked"), ("ppo", "stacked")],  # (PPO: a checkpoint mid-rollout)
)
def test_a_killed_population_resumes_to_the_same_csvs(tmp_path, agent, kernel):
    tiny = REDO if agent == "dqn" else [*TINY_PPO, "intervention=redo", "interventions.redo.interval=500"]
    args = [*tiny, "total_steps=6000", "population=2", f"population_kernel={kernel}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(runner_cmd(*args, f"run_dir={tmp_path / 'whole'}"), cwd=ROOT, env=env, timeout=300)
    assert whole.returncode == 0
    proc = start_run(tmp_path / "killed", *args)
    deadline = time.time() + 120
    checkpoints = [
        planned_run(*args, f"run_dir={tmp_path / 'killed'}", f"seed={s}") / "checkpoint" for s in (0, 1)
    ]
    while not all((c / "COMPLETE").exists() for c in checkpoints):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # rows past the checkpoint: the resume drops them
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out.count("Run the same command again to resume") == 2
    resumed = subprocess.run(
        runner_cmd(*args, f"run_dir={tmp_path / 'killed'}"), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0 and resumed.stdout.count("resuming") == 2
    for seed in (0, 1):
        for name in ("metrics.csv", "returns.csv"):
            killed, whole = (rows(tmp_path / root, name, seed, agent) for root in ("killed", "whole"))
            assert killed == whole, (seed, name)
    state = torch.load(checkpoints[0].parent / "model.pt", weights_only=True)  # a seed's own tensors only
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in state.values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["population=0"], "population=0 is out of range: must be a whole number >= 1"),
        (
            ["population=2", "agent=random", "population_kernel=stacked"],
            "agent 'random' learns with population_kernel=loop",
        ),
        (["population=100000", "agent.buffer_size=1000000"], "GiB of memory"),
        (["population=2", "population_kernel=fast"], "population_kernel='fast'"),
        (
            ["population=2", "population_kernel=stacked", "intervention=spectral_norm"],
            "cannot take spectral_norm",
        ),
    ],
)
def test_a_bad_population_is_one_line_exit_2_and_no_run_directory(run, tmp_path, args, message):
    result = run("env=minatar", *args, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_stacked_acting_picks_the_actions_each_seed_would():
    """One vmapped forward for the seeds' greedy actions; epsilon-greedy's draws stay each seed's."""
    agents = []
    for seed in range(3):
        torch.manual_seed(seed)
        agent = make_dqn(learning_starts=10**9, epsilon_end=0.3)
        agent.rng = np.random.default_rng(seed)
        agents.append(agent)
    alone = copy.deepcopy(agents)
    population = members(agents)
    stacked = StackedLearning(population, own_rng)
    rng = np.random.default_rng(0)
    for step in (0, 10**7, 10**7 + 4):  # all explore, then mostly greedy
        for member in population:
            member.obs, member.step = rng.random((4, 4, 10, 10)) < 0.5, step
        for member, theirs, actions in zip(population, alone, stacked.act(population)):
            np.testing.assert_array_equal(actions, theirs.act(member.obs, step))


def test_a_stacked_seed_resumed_alone_says_its_floats_will_differ(tmp_path, monkeypatch, capsys):
    args = [*REDO, f"run_dir={tmp_path}", "total_steps=3000"]
    real = Run.record

    def stop_at_1000(self, before, metrics):
        real(self, before, metrics)
        if self.step >= 1000:
            self.stop_signal = signal.SIGTERM  # (as the handler would: a checkpoint, then exit)

    monkeypatch.setattr(Run, "record", stop_at_1000)
    population = Population(compose_config([*args, "population=2", "population_kernel=stacked"]))
    assert population.train() == 128 + signal.SIGTERM
    monkeypatch.undo()
    capsys.readouterr()
    assert Run(compose_config([*args, "seed=1"])).train() == 0
    assert "a population's stacked kernel" in capsys.readouterr().out


@pytest.mark.parametrize("kernel", ["loop", "stacked"])
def test_a_seed_that_fails_stops_alone(tmp_path, monkeypatch, capsys, kernel):
    """A non-finite metric stops that seed as it stops a separate run (its last checkpoint and
    logs kept, no done marker); the other seeds finish, and the population exits 1."""
    real = Run.record

    def seed_1_diverges(self, before, metrics):
        if self.cfg.seed == 1 and self.step >= 1000:
            raise RunError(f"loss became nan at step {self.step:,}")
        real(self, before, metrics)

    monkeypatch.setattr(Run, "record", seed_1_diverges)
    cfg = compose_config([*REDO, f"run_dir={tmp_path}", "population=3", f"population_kernel={kernel}"])
    assert Population(cfg).train() == 1
    assert "error: seed 1: loss became nan at step 1,000" in capsys.readouterr().err
    done = [(find_run(tmp_path, intervention="redo", seed=s) / "done").exists() for s in range(3)]
    assert done == [True, False, True]


def test_a_population_checks_every_seed_before_it_creates_any(tmp_path):
    train(REDO, tmp_path / "other", seed=1)  # seed 1 of another config, under the same label
    args = [*REDO, "variant=mine", "agent.lr=0.001"]
    (tmp_path / "runs").mkdir()
    theirs = find_run(tmp_path / "other", intervention="redo", seed=1)
    mine = planned_run(*args, f"run_dir={tmp_path / 'runs'}", "seed=1")
    mine.parent.mkdir(parents=True)
    (mine.parent / "seed1").mkdir()
    (mine / "config.yaml").write_text((theirs / "config.yaml").read_text())
    with pytest.raises(RunError, match="holds a run with another config"):
        Population(compose_config([*args, f"run_dir={tmp_path / 'runs'}", "population=2"])).train()
    assert sorted(p.name for p in mine.parent.iterdir()) == ["seed1"]  # no seed0 directory
