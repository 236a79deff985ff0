"""Sweeps: a tiny experiment through the joblib launcher (and a relaunch that skips it), the
submitit path as far as a machine without Slurm allows, and the job listing/validation."""

import os
import subprocess
import sys

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import ROOT, find_run
from plasticity_bench.runner.config import CONFIG_DIR, register_schemas

TINY = [
    "+experiment=minatar_ln_l2",
    "env.game=breakout,asterix",
    "intervention=none,ln_l2",
    "seed=0",
    "total_steps=300",
    "agent.learning_starts=100",
    "agent.buffer_size=500",
    "probe.interval=200",
    "probe.steps=5",
]


def sweep(*args, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "plasticity_bench", "sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


def test_tiny_experiment_runs_through_joblib_and_a_relaunch_skips_every_run(tmp_path):
    args = [
        "--multirun",
        *TINY,
        f"run_dir={tmp_path}",
        "hydra/launcher=local",
        "hydra.launcher.n_jobs=2",
        "threads=1",
    ]
    sweep(*args)
    dirs = sorted(tmp_path.glob("minatar/*/dqn/*/seed0"))
    variant = "[agent.buffer_size=500,agent.learning_starts=100]"  # what TINY changes from the defaults
    assert [str(d.relative_to(tmp_path)) for d in dirs] == [
        f"minatar/asterix/dqn/ln_l2{variant}/seed0",
        f"minatar/asterix/dqn/none{variant}/seed0",
        f"minatar/breakout/dqn/ln_l2{variant}/seed0",
        f"minatar/breakout/dqn/none{variant}/seed0",
    ]
    assert all((d / "done").exists() and (d / "returns.csv").stat().st_size > 0 for d in dirs)
    before = {d: (d / "metrics.csv").read_bytes() for d in dirs}
    again = sweep(*args)
    assert again.stdout.count("finished already") == 4
    assert all((d / "metrics.csv").read_bytes() == before[d] for d in dirs)
    listing = sweep("--plan", *TINY, f"run_dir={tmp_path}").stdout
    assert listing.strip().endswith("4 jobs: 0 new, 0 resume, 4 done")


def test_plan_lists_new_jobs_and_check_rejects_a_bad_value(tmp_path):
    listing = sweep("--plan", "+experiment=minatar_ln_l2", "seed=0,1", f"run_dir={tmp_path}").stdout
    assert listing.strip().endswith("40 jobs: 40 new, 0 resume, 0 done")
    assert f"new     {tmp_path}/minatar/freeway/dqn/l2/seed1" in listing
    bad = sweep(
        "--check",
        "+experiment=minatar_zoo",
        "intervention=none,crelu_redo",
        f"run_dir={tmp_path}",
        check=False,
    )
    assert bad.returncode == 2 and "crelu and redo cannot be composed" in bad.stderr


def test_submitit_path_runs_a_job_locally(tmp_path):
    # submitit's local executor: the same pickled job, Slurm's only missing piece is sbatch
    sweep(
        "--multirun",
        "+experiment=minatar_ln_l2",
        "env.game=breakout",
        "intervention=ln_l2",
        "seed=0",
        "total_steps=200",
        "agent.learning_starts=100",
        "agent.buffer_size=500",
        "probe.interval=0",
        f"run_dir={tmp_path}",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "threads=1",
    )
    assert (find_run(tmp_path, intervention="ln_l2") / "done").exists()


def test_slurm_launcher_config_makes_the_expected_sbatch_script(tmp_path, monkeypatch):
    import submitit

    register_schemas()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            return_hydra_config=True,
            overrides=[
                "+experiment=atari_ln_l2",
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=1",
            ],
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["cpus_per_task"] == 4
    # what hydra-submitit-launcher passes to submitit (its launch(): base keys as they are,
    # the rest prefixed slurm_), with a stand-in srun: submitit only checks that it exists
    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    base = {
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
        "stderr_to_stdout",
    }
    params = {
        k if k in base else f"slurm_{k}": v
        for k, v in launcher.items()
        if k not in ("_target_", "submitit_folder", "max_num_timeout") and v is not None
    }
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("python -m plasticity_bench sweep", "job")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=16GB",
        "#SBATCH --time=2880",
    ):
        assert line in script, line


def test_population_packs_the_seeds_of_a_sweep_into_processes(tmp_path):
    tiny = [a for a in TINY if not a.startswith(("env.game", "intervention", "seed"))]
    tiny += ["env.game=breakout", "intervention=none"]
    args = [
        "--multirun",
        *tiny,
        "seed=0,1,2,3",
        "population=2",
        f"run_dir={tmp_path}",
        "hydra.launcher.n_jobs=1",
    ]
    out = sweep(*args, "hydra/launcher=local", "threads=1").stdout
    assert out.count("population of 2 seeds") == 2  # two jobs, two seeds each
    dirs = sorted(tmp_path.glob("minatar/breakout/dqn/*/seed*"))
    assert [d.name for d in dirs] == ["seed0", "seed1", "seed2", "seed3"]
    assert all((d / "done").exists() for d in dirs)
    listing = sweep("--plan", *tiny, "seed=0,1,2,3", "population=2", f"run_dir={tmp_path}").stdout
    assert listing.strip().endswith("4 jobs: 0 new, 0 resume, 4 done")
    bad = sweep("--check", *tiny, "seed=0,1,2", "population=2", f"run_dir={tmp_path}", check=False)
    assert bad.returncode == 2 and "use a population size that divides 3" in bad.stderr
    one = sweep("--check", *tiny, "seed=0", "population=2", f"run_dir={tmp_path}", check=False)
    assert one.returncode == 2 and "this sweep has one (seed=0)" in one.stderr
