"""Runs: one config, one identity (the variant), a finished run is never silently reused, and
TensorBoard as an optional mirror of the CSVs."""

import os
import random
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch

from conftest import ROOT, TINY_DQN, planned_run, runner_cmd
from plasticity_bench.analysis.__main__ import main as figures
from plasticity_bench.core.schema import METRICS_COLUMNS, legacy_columns
from plasticity_bench.runner.config import compose_config
from plasticity_bench.runner.logger import CSVLog


def test_variant_names_what_differs_from_the_defaults():
    assert compose_config(["intervention=ln_l2"]).variant == "ln_l2"
    assert (
        compose_config(["intervention=ln_l2", "interventions.l2.coef=1e-3"]).variant == "ln_l2[l2.coef=0.001]"
    )
    # unused family
    assert compose_config(["agent.lr=1e-3", "interventions.redo.tau=0.5"]).variant == "none[agent.lr=0.001]"
    # keys that do not change training stay out: seed, length, logging, probes, threads, device
    quiet = [
        "seed=3",
        "total_steps=1000",
        "log.interval=10",
        "probe.steps=3",
        "threads=1",
        "device=cpu",
        "checkpoint.interval=7",
        "log.tensorboard=true",
    ]
    assert compose_config(quiet).variant == "none"
    # PPO's annealing follows the length
    assert compose_config(["agent=ppo", "total_steps=1000"]).variant == "none"
    long = compose_config(
        [
            "agent=ppo",
            "agent.lr=1e-3",
            "agent.clip_coef=0.3",
            "agent.ent_coef=0.02",
            "agent.vf_coef=1",
            "agent.gamma=0.9",
            "env.num_envs=4",
            "agent.num_steps=64",
        ]
    ).variant
    assert (
        long.startswith("none[agent.clip_coef=0.3,agent.ent_coef=0.02,agent.gamma=0.9,+4_more,")
        and len(long) < 100
    )
    assert compose_config(["variant=my_sweep_point"]).variant == "my_sweep_point"


def test_another_config_in_the_same_run_dir_is_another_run_and_figures_show_both(run, tmp_path, capsys):
    first = run(*TINY_DQN)
    second = run(*TINY_DQN, "agent.lr=1e-3")
    dirs = [
        planned_run(*TINY_DQN, f"run_dir={tmp_path}"),
        planned_run(*TINY_DQN, "agent.lr=1e-3", f"run_dir={tmp_path}"),
    ]
    assert sorted(p.parent for p in tmp_path.rglob("done")) == sorted(dirs) and dirs[0] != dirs[1]
    assert "finished already" not in second.stdout and "finished already" not in first.stdout
    assert "finished already" in run(*TINY_DQN, "agent.lr=1e-3").stdout  # rerunning either one skips it
    assert "finished already" in run(*TINY_DQN).stdout
    returns = pd.read_csv(dirs[1] / "returns.csv")
    assert set(returns.variant) == {dirs[1].parent.name} and set(returns.intervention) == {"none"}
    assert (
        figures([str(tmp_path), str(tmp_path / "out"), "--reps", "20", "--curve-reps", "10", "--bins", "4"])
        == 0
    )
    aggregate = pd.read_csv(tmp_path / "out" / "tables" / "aggregate.csv")
    assert set(aggregate.variant) == {d.parent.name for d in dirs}


def test_a_finished_run_asked_for_another_length_says_so(run, tmp_path):
    run("agent=random", "total_steps=500", "log.progress=false")
    result = run("agent=random", "total_steps=900", "log.progress=false", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1
    assert (
        "finished at total_steps=500 and this asks for 900" in lines[0]
        and "delete that directory" in lines[0]
    )


def test_a_log_written_before_variants_gets_the_column_when_its_run_resumes(tmp_path):
    path = tmp_path / "metrics.csv"
    old = CSVLog(path, legacy_columns(METRICS_COLUMNS), ("minatar", "breakout", "dqn", "ln", 0), append=False)
    old.write(100, "loss", "", 1.5)
    offset = old.offset()
    old.write(200, "loss", "", 2.5)  # after the checkpoint: dropped at the resume
    old.close()
    log = CSVLog(path, METRICS_COLUMNS, ("minatar", "breakout", "dqn", "ln", "ln", 0), append=True)
    log.truncate(offset)
    log.write(200, "loss", "", 3.5)
    log.close()
    frame = pd.read_csv(path)
    assert tuple(frame.columns) == METRICS_COLUMNS and frame.variant.tolist() == ["ln", "ln"]
    assert frame.value.tolist() == [1.5, 3.5]


def test_tensorboard_mirrors_the_logs_and_leaves_the_csvs_unchanged(run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(*TINY_DQN, f"run_dir={tmp_path / 'off'}")
    run(*TINY_DQN, "log.tensorboard=true", f"run_dir={tmp_path / 'on'}")
    on, off = (
        planned_run(*TINY_DQN, f"run_dir={tmp_path / 'on'}"),
        planned_run(*TINY_DQN, f"run_dir={tmp_path / 'off'}"),
    )
    for name in ("returns.csv", "metrics.csv"):
        assert (on / name).read_bytes() == (off / name).read_bytes()
    assert not (off / "tensorboard").exists()
    events = EventAccumulator(str(on / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "returns/episode_return",
        "train/loss",
        "train/q_mean",
        "probes/probe_loss",
        "probes/dormant_frac@0.1/fc2",
        "speed/steps_per_second",
    } <= tags
    metrics = pd.read_csv(on / "metrics.csv")
    logged = metrics[metrics.metric == "loss"]
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == logged.step.tolist()
    assert [s.value for s in scalars] == pytest.approx(logged.value.tolist(), rel=1e-6)
    assert len(events.Scalars("returns/episode_return")) == len(pd.read_csv(on / "returns.csv"))


@pytest.mark.slow
def test_sigkill_at_ten_random_steps_resumes_to_identical_csvs_and_weights(run, tmp_path):
    """A MinAtar DQN run with redo and probes firing several times, killed (SIGKILL) at 10 random
    moments and resumed each time, ends with the CSVs and weights of an uninterrupted run."""
    args = [
        "env=minatar",
        "agent=dqn",
        "intervention=redo",
        "total_steps=30000",
        "agent.learning_starts=2000",
        "interventions.redo.interval=500",
        "probe.interval=5000",
        "probe.steps=50",
        "checkpoint.interval=1500",
        "log.interval=500",
        "log.progress=false",
        "threads=1",
    ]
    whole = run(*args, f"run_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0
    d = planned_run(*args, f"run_dir={tmp_path / 'killed'}")
    rng = random.Random(0)
    kills = 0
    while kills < 10:
        proc = subprocess.Popen(
            runner_cmd(*args, f"run_dir={tmp_path / 'killed'}"),
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(rng.uniform(3, 12))
        if proc.poll() is not None:
            break  # it finished before this kill
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += 1
    run(*args, f"run_dir={tmp_path / 'killed'}")
    reference = planned_run(*args, f"run_dir={tmp_path / 'whole'}")
    assert kills == 10 and (d / "done").exists()
    for name in ("returns.csv", "metrics.csv"):
        assert (d / name).read_bytes() == (reference / name).read_bytes(), name
    a, b = torch.load(d / "model.pt"), torch.load(reference / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    redo_rows = pd.read_csv(d / "metrics.csv").query("metric == 'redo_reset_frac'")
    assert len(redo_rows) >= 10  # redo acted many times across the kills
    print(f"\n{kills} kills; sessions: {pd.read_csv(d / 'timing.csv').session_start_step.nunique()}")


def test_a_finished_run_under_ones_own_label_refuses_another_config(run, tmp_path):
    run("agent=random", "total_steps=500", "log.progress=false", "variant=mine")
    result = run(
        "agent=random", "total_steps=500", "log.progress=false", "variant=mine", "env.num_envs=2", check=False
    )
    lines = result.stderr.strip().splitlines()
    assert (
        result.returncode == 1
        and len(lines) == 1
        and "finished run with another config (env.num_envs: 1 -> 2)" in lines[0]
    )
