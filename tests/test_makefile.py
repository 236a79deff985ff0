"""The Makefile's front door: a variable no target reads is refused in one line naming the valid
ones (exit 2, nothing run); the ones it reads reach the command (``make -n`` prints it)."""

import os
import subprocess

import pytest

from conftest import ROOT


def make(*args: str) -> subprocess.CompletedProcess:
    # .venv/.installed is older than pyproject.toml on a fresh clone: -o keeps make from creating it here
    # (under `make test` the outer make's flags and variables would reach this make: leave them out)
    env = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
    }
    return subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize("typo", ["STEP=5000", "steps=5000", "SEEDS=3", "intervention=ln"])
def test_a_variable_no_target_reads_is_refused_naming_the_valid_ones(typo):
    done = make("classic", "AGENT=ppo", typo)
    assert done.returncode == 2 and done.stdout == ""
    name = typo.split("=")[0]
    assert f"unknown variable {name}; valid: AGENT INTERVENTION GAME SEED STEPS" in done.stderr


def test_the_variables_reach_the_command():
    command = make("classic", "AGENT=ppo", "STEPS=5000", "POPULATION=3", "ARGS=agent.lr=1e-4 seed=2").stdout
    assert "total_steps=5000" in command and "population=3" in command and "agent.lr=1e-4 seed=2" in command
    assert "--population 2,4" in make("bench", "POPULATION=2,4").stdout
    assert "--population" not in make("bench").stdout
