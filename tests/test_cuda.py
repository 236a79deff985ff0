"""device=cuda end to end: each agent on each suite, with probes and an intervention that acts
on the network at intervals, on a CUDA device. Skipped where torch sees none (CI, this CPU
machine): run them with `make test` on a GPU machine."""

import pandas as pd
import pytest
import torch

from conftest import TINY_DQN, TINY_PPO, find_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

ATARI = [
    "env=atari",
    "total_steps=1600",
    "probe.interval=800",
    "probe.steps=5",
    "probe.batch_size=16",
    "probe.entk_batch=8",
    "checkpoint.interval=800",
]


@pytest.mark.parametrize("suite", ["minatar", "atari"])
@pytest.mark.parametrize("agent, tiny", [("dqn", TINY_DQN), ("ppo", TINY_PPO)])
def test_a_run_on_cuda_trains_probes_and_checkpoints(run, tmp_path, suite, agent, tiny):
    args = [*tiny, "device=cuda", "intervention=ln_l2"]
    if suite == "atari":  # the tiny sizes, on Atari frames
        args = [
            a
            for a in args
            if not a.startswith(("env=", "env.num_envs", "total_steps", "probe.", "checkpoint."))
        ]
        args += [*ATARI, *(["agent.learning_starts=300"] if agent == "dqn" else [])]
    run(*args)
    d = find_run(tmp_path, suite, "Breakout" if suite == "atari" else "breakout", agent, "ln_l2")
    metrics = pd.read_csv(d / "metrics.csv", keep_default_na=False)
    assert {"loss", "grad_norm", "probe_loss", "feature_srank", "entk_condition"} <= set(metrics["metric"])
    assert metrics["value"].notna().all()
    state = torch.load(d / "model.pt", map_location="cpu")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_the_redo_and_reset_surgery_keeps_the_optimizer_on_the_device(run, tmp_path):
    run(*TINY_DQN, "device=cuda", "intervention=redo", "interventions.redo.interval=100")
    run(*TINY_DQN, "device=cuda", "intervention=reset", "interventions.reset.interval=600")
    for name, acted in (("redo", "redo_reset_frac"), ("reset", "reset_layers")):
        metrics = pd.read_csv(find_run(tmp_path, intervention=name) / "metrics.csv", keep_default_na=False)
        assert metrics["value"].notna().all() and "loss" in set(metrics["metric"])
        assert acted in set(metrics["metric"]), f"{name} never acted"  # the surgery happened, on the GPU


def test_a_stacked_population_on_cuda_trains_each_seed_as_its_run_does(run, tmp_path):
    """population=2 with device=cuda takes the stacked kernel (auto); each seed's first rows are
    its separate run's to 1e-4 (cuBLAS and cuDNN round as they choose)."""
    args = [*TINY_DQN, "device=cuda", "intervention=redo", "interventions.redo.interval=500"]
    population = run(*args, "population=2", f"run_dir={tmp_path / 'population'}")
    assert "stacked kernel" in population.stdout
    for seed in range(2):
        run(*args, f"seed={seed}", f"run_dir={tmp_path / 'separate'}")
        ours, theirs = (
            pd.read_csv(find_run(tmp_path / root, intervention="redo", seed=seed) / "metrics.csv")
            for root in ("population", "separate")
        )
        assert ours[["step", "metric"]].equals(theirs[["step", "metric"]])
        early = ours["metric"].isin(["loss", "q_mean"]) & (ours["step"] <= 600)
        assert (
            (ours["value"][early] - theirs["value"][early]).abs()
            <= 1e-4 * theirs["value"][early].abs() + 1e-6
        ).all()
