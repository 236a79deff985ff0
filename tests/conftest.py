import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plasticity_bench.agents.base import EnvSpec
from plasticity_bench.agents.dqn import DQN, DQNConfig
from plasticity_bench.agents.ppo import PPO, PPOConfig
from plasticity_bench.interventions import Composition
from plasticity_bench.nets.learner import Learner

ROOT = Path(__file__).resolve().parents[1]
# The suite takes centred RMSProp's steps eagerly (here and in the runs it starts): compiling the
# fused step costs every test process 2-8 s, half the suite's time again. tests/test_optim.py
# checks the compiled step against the eager one, and one resume test runs compiled (COMPILED).
os.environ["TORCHDYNAMO_DISABLE"] = "1"
COMPILED = {"TORCHDYNAMO_DISABLE": "0"}  # extra env of a subprocess that compiles as a user's run does
# A tiny DQN on MinAtar: learning starts early and probes run often, so every code path runs in
# a few seconds.
TINY_DQN = [
    "env=minatar",
    "agent=dqn",
    "total_steps=2400",
    "agent.learning_starts=300",
    "agent.batch_size=8",
    "agent.updates_per_step=0.25",
    "agent.buffer_size=4000",
    "agent.target_update_interval=50",
    "log.interval=200",
    "checkpoint.interval=800",
    "log.progress=false",
    "threads=1",
    "probe.interval=600",
    "probe.steps=20",
    "probe.batch_size=32",
    "probe.entk_batch=16",
]

# 4 envs x 32-step rollouts: an update every 128 agent steps, so checkpoints fall mid-rollout
TINY_PPO = [
    "env=minatar",
    "agent=ppo",
    "total_steps=4000",
    "env.num_envs=4",
    "agent.num_steps=32",
    "log.interval=200",
    "checkpoint.interval=800",
    "log.progress=false",
    "threads=1",
    "probe.interval=600",
    "probe.steps=20",
    "probe.batch_size=32",
    "probe.entk_batch=16",
]


def find_run(root, suite="minatar", game="breakout", agent="dqn", intervention="none", seed=0):
    """The run directory of ``intervention`` under ``root``: its variant is the intervention,
    or the intervention with the overrides a test made (``none[agent.batch_size=8,...]``)."""
    found = [
        d
        for d in Path(root).glob(f"{suite}/{game}/{agent}/*/seed{seed}")
        if d.parent.name.split("[")[0] == intervention
    ]
    assert len(found) <= 1, found
    return found[0] if found else Path(root) / suite / game / agent / intervention / f"seed{seed}"


def planned_run(*args):
    """The run directory ``python -m plasticity_bench run *args`` will use (composed here, as the
    runner does)."""
    from plasticity_bench.runner.config import compose_config, run_path

    return run_path(compose_config(list(args)))


def runner_cmd(*args):
    return [sys.executable, "-m", "plasticity_bench", "run", *args]


def start_run(run_dir, *args, env=None) -> subprocess.Popen:
    """Start ``python -m plasticity_bench run`` in the background (to be stopped by a test)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        runner_cmd(*args, f"run_dir={run_dir}"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fires_often() -> list[str]:
    """Overrides that make every family that acts at a step or interval act within a smoke run
    (several times: every 100 agent steps, or every 5 gradient updates for ReDo)."""
    from plasticity_bench.interventions import INTERVENTIONS

    overrides = []
    for name, cls in sorted(INTERVENTIONS.items()):
        keys = {f.name for f in dataclasses.fields(cls.Config)}
        every = 5 if getattr(cls, "unit", "steps") == "updates" else 100
        overrides += [f"interventions.{name}.{key}={every}" for key in ("interval", "at") if key in keys]
    return overrides


@pytest.fixture
def run(tmp_path):
    """Run ``python -m plasticity_bench run`` in a subprocess under tmp_path; returns CompletedProcess."""

    def _run(*args, check=True, env=None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        result = subprocess.run(
            runner_cmd(f"run_dir={tmp_path}", *args),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    return _run


class AdamLearner(Learner):
    """The least a surgery needs: a network, a target, and an optimizer it can ask to rebuild."""

    def __init__(self, network, target=None, lr=1e-3):
        self.network, self.target, self.lr = network, target, lr
        self.optimizer = self.make_optimizer()

    def make_optimizer(self):
        return torch.optim.Adam([p for p in self.network.parameters() if p.requires_grad], lr=self.lr)


def make_dqn(num_envs=4, intervention="none", **overrides):
    cfg = DQNConfig(**{"buffer_size": 1000, "learning_starts": 0, "batch_size": 4, **overrides})
    return DQN(
        cfg,
        EnvSpec((4, 10, 10), np.dtype(bool), 6, num_envs),
        Composition(intervention),
        torch.device("cpu"),
        0,
    )


def feed(agent, steps, num_envs=4, start=0):
    rng = np.random.default_rng(0)
    for t in range(steps):
        obs = rng.random((num_envs, 4, 10, 10)) < 0.5
        nxt = rng.random((num_envs, 4, 10, 10)) < 0.5
        agent.observe(
            obs,
            rng.integers(6, size=num_envs),
            np.ones(num_envs),
            nxt,
            np.zeros(num_envs, bool),
            np.zeros(num_envs, bool),
            start + (t + 1) * num_envs,
        )


def make_ppo(num_envs=2, intervention="none", **overrides):
    cfg = PPOConfig(
        **{"num_steps": 4, "num_minibatches": 2, "update_epochs": 2, "anneal_steps": 1000, **overrides}
    )
    return PPO(
        cfg,
        EnvSpec((4, 10, 10), np.dtype(bool), 3, num_envs),
        Composition(intervention),
        torch.device("cpu"),
        0,
    )
