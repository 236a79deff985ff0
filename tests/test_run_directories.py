"""A run directory cannot be escaped, overwritten by another config or agent, or shared by two
processes; bad values are refused before anything is created; a run without a terminal still
says what it is doing."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY_DQN, planned_run, runner_cmd
from plasticity_bench.runner.config import ConfigError, compose_config


def runner(tmp_path: Path, *args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        runner_cmd(f"run_dir={tmp_path}", *args),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def refused(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and words in result.stderr


@pytest.mark.parametrize("label", ["../../../../ESCAPED", "a/b", "..", ".hidden", "x" * 101, "tab\there"])
def test_a_label_that_would_leave_its_directory_is_refused_for_runs_shifts_and_sweeps(tmp_path, label):
    from plasticity_bench.shifts.train import config_from

    run_dir = tmp_path / "runs"
    refused(runner(run_dir, f"variant={label}", "total_steps=5"), 2, "cannot name a run directory")
    # (a tab: YAML's refusal)
    with pytest.raises(ValueError, match="cannot name a run directory|invalid override"):
        config_from([f"variant={label}", "tasks=1", "steps_per_task=5", f"run_dir={run_dir}"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep = subprocess.run(
        [
            sys.executable,
            "-m",
            "plasticity_bench",
            "sweep",
            "--check",
            "+experiment=minatar_ln_l2",
            f"variant={label}",
            f"run_dir={run_dir}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    refused(sweep, 2, "cannot name a run directory")
    assert not any(tmp_path.iterdir())  # nothing written, inside RUN_DIR or out of it


def test_the_shifts_arch_is_one_of_the_networks_before_anything_is_created(tmp_path):
    from plasticity_bench.shifts.train import config_from

    for arch in ("MLP", "../../ESCAPED_ARCH"):
        with pytest.raises(ValueError, match="arch="):
            config_from([f"arch={arch}", "tasks=1", "steps_per_task=5", f"run_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())


def test_a_finished_run_is_left_alone_by_another_agent_aiming_at_it(tmp_path):
    assert runner(tmp_path, *TINY_DQN, "total_steps=400").returncode == 0
    before = digest(tmp_path)
    refused(runner(tmp_path, "agent=ppo", "env=minatar", "total_steps=400", "variant=.."), 2, "contains '..'")
    assert digest(tmp_path) == before


def test_a_run_killed_before_its_first_checkpoint_refuses_another_config_under_its_label(tmp_path):
    args = [*TINY_DQN, "variant=mylabel", "total_steps=200000", "checkpoint.interval=100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        runner_cmd(f"run_dir={tmp_path}", *args),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    returns = planned_run(*args, f"run_dir={tmp_path}") / "returns.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not returns.exists() or returns.stat().st_size < 2000):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = digest(tmp_path)
    assert not (returns.parent / "checkpoint").exists() and before
    refused(runner(tmp_path, *args, "agent.lr=0.01"), 1, "holds a run with another config")
    assert digest(tmp_path) == before


def test_two_processes_on_one_run_one_refused_the_other_as_a_lone_run(tmp_path):
    args = [*TINY_DQN, "total_steps=1200"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    both = [
        subprocess.Popen(
            runner_cmd(f"run_dir={tmp_path / 'shared'}", *args),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in both]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    message = next(err for code, err in results if code == 1)
    assert "is in use by another process (PID " in message and message.count("\n") == 1
    assert runner(tmp_path / "alone", *args).returncode == 0
    shared, alone = (
        planned_run(*args, f"run_dir={tmp_path / 'shared'}"),
        planned_run(*args, f"run_dir={tmp_path / 'alone'}"),
    )
    for name in ("returns.csv", "metrics.csv"):
        assert (shared / name).read_bytes() == (alone / name).read_bytes()


@pytest.mark.parametrize(
    "args, words",
    [
        (["agent.lr=inf"], "agent.lr=inf is out of range: must be a finite number"),
        (["agent.lr=nan"], "agent.lr=nan is out of range: must be a finite number"),
        (["agent.batch_size=5000", "agent.buffer_size=100"], "larger than agent.buffer_size=100"),
        (["threads=1000"], "threads=1000 is out of range"),
        (["intervention=ln_"], "unknown intervention 'ln_'"),
        (["seed=1.5"], "seed=1.5 is out of range: must be a whole number"),
        (["total_steps=1.5"], "total_steps=1.5 is out of range: must be a whole number"),
        (["env.shift.kind=game_cycle", "env.minimal_action_set=true"], "needs env.minimal_action_set=false"),
    ],
)
def test_values_that_cannot_work_exit_2_before_anything_is_created(tmp_path, args, words):
    refused(runner(tmp_path, *args), 2, words)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("agent", ["dqn", "ppo"])
def test_a_whole_number_in_scientific_notation_is_a_step_count(agent):
    cfg = compose_config([f"agent={agent}", "total_steps=2.5e3"])
    assert cfg.total_steps == 2500 and (agent == "dqn" or cfg.agent.anneal_steps == 2500)
    with pytest.raises(ConfigError, match="whole number"):
        compose_config([f"agent={agent}", "total_steps=2.5e0"])


def test_figures_into_a_folder_it_cannot_write_is_one_line(tmp_path):
    from plasticity_bench.analysis.__main__ import main as figures

    runs = ROOT / "results" / "minatar_continual"
    result = subprocess.run(
        [sys.executable, "-m", "plasticity_bench", "figures", str(runs), "/proc/x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    refused(result, 2, "cannot write to /proc/x")
    assert callable(figures)


def test_an_agent_module_that_fails_to_import_breaks_only_itself(tmp_path):
    """A copy of the packages where agents/ holds one broken file: dqn still runs; asking for the
    broken one names the file and why."""
    package = tmp_path / "plasticity_bench"
    package.mkdir()
    for entry in (ROOT / "plasticity_bench").iterdir():
        if entry.name == "agents":
            (package / "agents").mkdir()
            for source in entry.glob("*.py"):
                (package / "agents" / source.name).write_text(source.read_text())
            (package / "agents" / "mine.py").write_text("import not_installed_anywhere\n")
        else:
            (package / entry.name).symlink_to(entry)
    code = (
        "import sys; from plasticity_bench.runner.config import compose_config, ConfigError\n"
        "print(compose_config(['agent=dqn']).agent.name)\n"
        "try: compose_config(['agent=mine'])\nexcept ConfigError as e: print(e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "dqn", out.stderr
    assert (
        "unknown agent 'mine'" in lines[1]
        and "agents/mine.py failed to import (ModuleNotFoundError" in lines[1]
    )


def test_without_a_terminal_a_run_prints_its_plan_and_progress_lines(tmp_path):
    result = runner(
        tmp_path, *TINY_DQN, "total_steps=1200", "log.progress=true", "agent.learning_starts=5000"
    )
    lines = result.stdout.splitlines()
    assert "it never updates (agent.learning_starts=5,000 >= total_steps)" in lines[0]
    assert "first probe at step 600" in lines[0]
    assert any(line.startswith("step ") and "steps/s, ETA" in line for line in lines[1:]), result.stdout


def test_a_saved_config_that_predates_a_key_still_matches_its_run():
    from omegaconf import OmegaConf

    from plasticity_bench.runner.compose import RESUMABLE_CHANGES
    from plasticity_bench.runner.store import config_differences

    cfg = compose_config(TINY_DQN)
    saved = OmegaConf.to_container(cfg)
    del saved["agent"]["replay_at_shift"]  # written by a version without that key
    assert config_differences(OmegaConf.create(saved), cfg, RESUMABLE_CHANGES) == []
    saved["agent"]["lr"] = 0.5
    assert config_differences(OmegaConf.create(saved), cfg, RESUMABLE_CHANGES) == ["agent.lr: 0.5 -> 0.00025"]


def test_long_variant_labels_still_name_one_directory():
    cfg = compose_config(
        [
            "intervention=plasticity_injection_shrink_perturb_l2init",
            "agent.lr=0.000123",
            "agent.gamma=0.987",
            "agent.buffer_size=123456",
            "agent.batch_size=64",
            "agent.n_step=3",
        ]
    )
    assert len(cfg.variant) <= 100 and "_more," in cfg.variant


def test_a_stopped_run_asked_for_fewer_steps_than_it_has_done_says_so(tmp_path):
    import signal

    from plasticity_bench.runner.config import compose_config
    from plasticity_bench.runner.loop import Run, RunError

    args = [
        "env=minatar",
        "agent=random",
        f"run_dir={tmp_path}",
        "log.progress=false",
        "checkpoint.interval=500",
    ]
    first = Run(compose_config([*args, "total_steps=2000"]))
    first.build = (lambda build: lambda resuming: (build(resuming), stop_at(first, 699)))(first.build)
    assert first.train() == 128 + signal.SIGTERM  # a checkpoint at step 700
    with pytest.raises(
        RunError, match="checkpointed at step 700, past total_steps=400; ask for total_steps >= 700"
    ):
        Run(compose_config([*args, "total_steps=400"])).train()
    assert (first.dir / "checkpoint").exists() and not (first.dir / "done").exists()


def stop_at(run, step: int) -> None:
    """Make ``run`` receive a SIGTERM when it acts at ``step`` (it stops after that step)."""
    import signal

    act = run.agent.act

    def acting(obs, now):
        if now >= step:
            run.stop_signal = signal.SIGTERM
        return act(obs, now)

    run.agent.act = acting


def test_a_ppo_run_may_resume_with_another_length():
    """PPO's learning-rate decay follows total_steps (configs/agent/ppo.yaml): extending a stopped
    run is a resumable change, as for every agent."""
    from plasticity_bench.runner.compose import RESUMABLE_CHANGES
    from plasticity_bench.runner.store import config_differences

    short, long = (compose_config(["agent=ppo", f"total_steps={n}"]) for n in (100_000, 200_000))
    assert short.agent.anneal_steps != long.agent.anneal_steps
    assert config_differences(short, long, RESUMABLE_CHANGES) == []
