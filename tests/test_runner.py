"""The training loop: contract files, clear errors, determinism, resume after a kill."""

import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch

from conftest import COMPILED, ROOT, TINY_DQN, TINY_PPO, find_run, planned_run, runner_cmd, start_run
from plasticity_bench import agents
from plasticity_bench.core.schema import METRICS_COLUMNS, RETURNS_COLUMNS, TIMING_COLUMNS


def run_dir(tmp_path, intervention="none", agent="dqn", game="breakout", seed=0, suite="minatar"):
    return find_run(tmp_path, suite, game, agent, intervention, seed)


def test_random_agent_writes_the_contract_run_directory(run, tmp_path):
    run("env=minatar", "agent=random", "total_steps=3000", "log.progress=false")
    d = run_dir(tmp_path, agent="random")
    assert {p.name for p in d.iterdir()} >= {"config.yaml", "returns.csv", "metrics.csv", "done"}
    returns = pd.read_csv(d / "returns.csv")
    assert tuple(returns.columns) == RETURNS_COLUMNS and len(returns) > 10
    identity = returns[["suite", "game", "agent", "intervention", "variant", "seed"]].iloc[0].tolist()
    assert identity == ["minatar", "breakout", "random", "none", "none", 0]
    assert returns["step"].is_monotonic_increasing and returns["step"].max() <= 3000
    assert returns["episode_length"].sum() <= 3000
    timing = pd.read_csv(d / "timing.csv")
    assert tuple(timing.columns) == TIMING_COLUMNS
    assert timing["step"].tolist() == [1000, 2000, 3000]  # every log interval (the end is one: no second row)
    assert timing["wall_seconds"].is_monotonic_increasing and (timing["steps_per_second"] > 0).all()


def test_dqn_logs_losses_and_finished_runs_are_skipped(run, tmp_path):
    run(*TINY_DQN)
    d = run_dir(tmp_path)
    metrics = pd.read_csv(d / "metrics.csv", keep_default_na=False)
    assert tuple(metrics.columns) == METRICS_COLUMNS
    assert {"loss", "q_mean"} <= set(metrics["metric"]) and metrics["step"].min() >= 300
    assert not (d / "checkpoint").exists() and (d / "model.pt").exists()
    again = run(*TINY_DQN)
    assert "finished already" in again.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["agent=nope"], "unknown agent 'nope'; valid: " + ", ".join(sorted(agents.AGENTS))),
        (["env=nope"], "unknown suite 'nope'; valid: atari, classic, minatar"),
        (["env.game=pong"], "unknown minatar game 'pong'; valid: asterix, breakout"),
        (["env=atari", "env.game=Zelda"], "unknown atari game 'Zelda'; valid: Adventure, AirRaid, Alien"),
        (["env=atari", "env.game=Hopper"], "unknown atari game 'Hopper'"),
        (["intervention=magic"], "unknown intervention 'magic'; valid: none"),
        (["agent.lrr=1"], "unknown key 'agent.lrr' (a typo?)"),
        (["seed=abc"], "seed='abc' is out of range: must be a whole number >= 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run_directory(run, tmp_path, args, message):
    result = run(*args, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_same_seed_gives_identical_csvs(run, tmp_path):
    run(*TINY_DQN, "run_dir=" + str(tmp_path / "a"))
    run(*TINY_DQN, "run_dir=" + str(tmp_path / "b"))
    for name in ("returns.csv", "metrics.csv"):
        a = (run_dir(tmp_path / "a") / name).read_bytes()
        b = (run_dir(tmp_path / "b") / name).read_bytes()
        assert a == b and len(a) > 200


def _start(tmp_path, sub, *args, env=None):
    return start_run(tmp_path / sub, *args, env=env)


def _wait_for_checkpoint(d, proc, timeout=120):
    deadline = time.time() + timeout
    while not (d / "checkpoint" / "COMPLETE").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)


INJECTION = ("intervention=plasticity_injection", "interventions.plasticity_injection.at=600")


@pytest.mark.parametrize(
    "sig, args, agent, intervention",
    [
        (signal.SIGKILL, TINY_DQN, "dqn", "none"),
        (signal.SIGINT, TINY_DQN, "dqn", "none"),
        # the network changes shape at step 600, before the checkpoint at 800
        (signal.SIGKILL, [*TINY_DQN, *INJECTION], "dqn", "plasticity_injection"),
        # SIGTERM is how a sweep stops its jobs; ln_l2 is the headline intervention
        (signal.SIGTERM, [*TINY_DQN, "intervention=ln_l2"], "dqn", "ln_l2"),
        # the checkpoint at 800 falls in the middle of a 128-step PPO rollout
        (signal.SIGKILL, TINY_PPO, "ppo", "none"),
        # nonstationary runs: the checkpoint at 800 falls in task 0 (games switch at 1000) or in the
        # middle of a smooth permutation's walk (task 1 of 700 steps)
        (signal.SIGKILL, [*TINY_PPO, "env.shift.kind=game_cycle", "env.shift.interval=1000"], "ppo", "none"),
        (
            signal.SIGKILL,
            [*TINY_DQN, "env.shift.kind=obs_permutation", "env.shift.smooth=true", "env.shift.interval=700"],
            "dqn",
            "none",
        ),
    ],
)
def test_killed_run_resumes_to_the_same_csvs(run, tmp_path, sig, args, agent, intervention):
    killed_run_resumes_to_the_same_csvs(run, tmp_path, sig, args, agent, intervention)


def killed_run_resumes_to_the_same_csvs(run, tmp_path, sig, args, agent, intervention, env=None):
    """Kill a run after its first checkpoint with ``sig``, resume it: its CSVs are those of the
    same run left alone (``env``: extra environment variables of both processes)."""
    run(*args, f"run_dir={tmp_path / 'whole'}", env=env)
    d = planned_run(*args, f"run_dir={tmp_path / 'killed'}")
    proc = _start(tmp_path, "killed", *args, env=env)
    _wait_for_checkpoint(d, proc)
    time.sleep(0.3)  # let it write rows past the checkpoint: resume must drop them
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert not (d / "done").exists(), "the run finished before it was killed; make it longer"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Run the same command again to resume" in out
    resumed = run(*args, f"run_dir={tmp_path / 'killed'}", env=env)
    assert "resuming" in resumed.stdout
    for name in ("returns.csv", "metrics.csv"):
        assert (d / name).read_bytes() == (
            run_dir(tmp_path / "whole", intervention, agent) / name
        ).read_bytes()
    sessions = pd.read_csv(d / "timing.csv")["session_start_step"]
    assert sessions.iloc[0] == 0 and sessions.iloc[-1] > 0  # wall-clock speed of both sessions is kept


def test_a_run_with_the_compiled_optimizer_step_resumes_to_the_same_csvs(run, tmp_path):
    """As users run it: centred RMSProp's fused step compiled in each process (the rest of the
    suite takes it eagerly, see conftest)."""
    killed_run_resumes_to_the_same_csvs(run, tmp_path, signal.SIGKILL, TINY_DQN, "dqn", "none", env=COMPILED)


def _interrupted_run(tmp_path, sub):
    """A tiny DQN run stopped by SIGINT after its first checkpoint; returns its directory."""
    d = planned_run(*TINY_DQN, f"run_dir={tmp_path / sub}")
    proc = _start(tmp_path, sub, *TINY_DQN)
    _wait_for_checkpoint(d, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    return d


def test_corrupt_checkpoint_is_reported_and_kept(run, tmp_path):
    d = _interrupted_run(tmp_path, "c")
    (d / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    returns_before = (d / "returns.csv").read_bytes()
    result = run(*TINY_DQN, f"run_dir={tmp_path / 'c'}", check=False)
    assert (
        result.returncode == 1 and "corrupt checkpoint" in result.stderr and "Traceback" not in result.stderr
    )
    assert str(d / "checkpoint") in result.stderr and "delete" in result.stderr
    assert (d / "checkpoint" / "state.pt").read_bytes() == b"not a checkpoint"
    assert (d / "returns.csv").read_bytes() == returns_before


def test_another_config_is_another_run_and_a_label_cannot_hide_it(run, tmp_path):
    d = _interrupted_run(tmp_path, "m")
    other = run(*TINY_DQN, f"run_dir={tmp_path / 'm'}", "agent.lr=0.0005")  # a new variant: a new directory
    assert "resuming from" not in other.stdout and not (d / "done").exists()
    assert planned_run(*TINY_DQN, f"run_dir={tmp_path / 'm'}", "agent.lr=0.0005") != d
    labelled = [*TINY_DQN, "variant=mine", f"run_dir={tmp_path / 'l'}"]
    proc = _start(tmp_path, "l", *labelled[:-1])
    _wait_for_checkpoint(planned_run(*labelled), proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    result = run(*labelled, "agent.lr=0.5", check=False)  # the same label, another config: refused
    assert (
        result.returncode == 1
        and "agent.lr" in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )


def test_resume_on_other_float_kernels_says_the_bytes_will_differ(run, tmp_path):
    d = _interrupted_run(tmp_path, "k")
    state = torch.load(d / "checkpoint" / "state.pt", weights_only=False)
    assert state["numerics"].startswith(f"torch {torch.__version__}")
    state["numerics"] = "torch 0.0, AVX2 kernels"
    torch.save(state, d / "checkpoint" / "state.pt")
    resumed = run(*TINY_DQN, f"run_dir={tmp_path / 'k'}")
    assert "checkpointed with torch 0.0, AVX2 kernels" in resumed.stdout and (d / "done").exists()


def test_unwritable_run_dir(run, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/plasticity-bench-cannot-write-here"
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = str(tmp_path / "ro")
    result = run("agent=random", "total_steps=10", f"run_dir={target}", check=False)
    assert result.returncode == 1 and "not writable" in result.stderr


def test_non_finite_loss_stops_with_a_clear_error(run, tmp_path):
    result = run(*TINY_DQN, "agent.lr=1e12", "agent.optimizer=adam", "agent.loss=mse", check=False)
    assert result.returncode == 1, result.stdout
    assert "became nan" in result.stderr or "became inf" in result.stderr
    assert (run_dir(tmp_path) / "returns.csv").stat().st_size > 100


def test_atari_run_resumes_after_sigint(run, tmp_path):
    args = [
        "env=atari",
        "env.num_envs=2",
        "env.max_episode_frames=400",
        "total_steps=1600",
        "agent.learning_starts=200",
        "agent.buffer_size=2000",
        "agent.batch_size=4",
        "log.interval=100",
        "checkpoint.interval=400",
        "log.progress=false",
        "threads=1",
        f"run_dir={tmp_path}",
    ]
    d = planned_run(*args)
    proc = subprocess.Popen(
        runner_cmd(*args),
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_checkpoint(d, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    resumed = run(*args[:-1])
    assert "resuming" in resumed.stdout and (d / "done").exists()
    metrics = pd.read_csv(d / "metrics.csv")
    loss_steps = metrics[metrics["metric"] == "loss"]["step"]
    # first update at step 202
    assert loss_steps.is_unique and list(loss_steps) == list(range(300, 1601, 100))
    returns = pd.read_csv(d / "returns.csv")
    assert returns["step"].is_monotonic_increasing and len(returns) >= 2


def test_config_differences_ignore_families_the_run_does_not_use():
    from omegaconf import OmegaConf

    from plasticity_bench.runner.compose import RESUMABLE_CHANGES
    from plasticity_bench.runner.config import compose_config
    from plasticity_bench.runner.store import config_differences

    new = compose_config(["intervention=l2", "total_steps=5"])
    saved = OmegaConf.create(OmegaConf.to_container(new))
    del saved.interventions["ln"]  # as saved by a version without `ln`
    assert config_differences(saved, new, RESUMABLE_CHANGES) == []
    saved.interventions.l2.coef = 0.5
    assert config_differences(saved, new, RESUMABLE_CHANGES) == ["interventions.l2.coef: 0.5 -> 1e-05"]


def test_threads_auto_is_the_suites_measured_default_and_a_number_overrides_it():
    from plasticity_bench.envs import SUITES
    from plasticity_bench.runner.config import compose_config

    for suite, (config_cls, _, _) in SUITES.items():
        assert compose_config([f"env={suite}"]).threads == config_cls.default_threads
    assert compose_config(["env=minatar"]).threads == 1  # small networks: one thread each
    assert compose_config(["env=minatar", "threads=2"]).threads == 2


def test_a_run_on_a_busy_machine_says_so_at_start(tmp_path, monkeypatch, capsys):
    from plasticity_bench.runner import loop
    from plasticity_bench.runner.config import compose_config

    monkeypatch.setattr(loop.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    cfg = compose_config(
        [
            "env=minatar",
            "agent=random",
            "total_steps=20",
            f"run_dir={tmp_path}",
            "log.progress=false",
            "probe.interval=0",
        ]
    )
    assert loop.Run(cfg).train() == 0
    lines = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("note: this machine is busy")
    ]
    assert len(lines) == 1 and "load average 64.0" in lines[0] and "threads=1" in lines[0]
    monkeypatch.setattr(loop.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert loop.busy_cores() == ""
