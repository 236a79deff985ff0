"""Every bad value is refused before a run starts: one line naming the key, the value and its
range, exit 2, nothing created. The ranges are declared once per field (core.ranges.ranged)."""

import dataclasses
import subprocess
import sys

import pytest

from conftest import ROOT
from plasticity_bench import agents
from plasticity_bench.core.ranges import Range, ranges
from plasticity_bench.envs import SUITES
from plasticity_bench.interventions import INTERVENTIONS
from plasticity_bench.probes import ProbeConfig
from plasticity_bench.runner.config import RUN_RANGES, ConfigError, compose_config
from plasticity_bench.shifts.train import ShiftsConfig, config_from


def bad_value(field_type, valid: Range):
    """A value of the field's type just outside its range."""
    if valid.choices is not None:
        return "bogus"
    if valid.ge is valid.gt is valid.le is valid.lt is None:
        return float("inf")  # any finite number: inf is the value out of range
    if valid.gt is not None:
        value = valid.gt
    elif valid.ge is not None:
        value = valid.ge - 1
    elif valid.le is not None:
        value = valid.le + 1
    else:
        value = valid.lt
    return int(value) if field_type in (int, "int") else value


def rl_cases():
    schemas = [("agent", agent, cls.Config) for agent, cls in agents.AGENTS.items()]
    schemas += [("env", suite, config) for suite, (config, _, _) in SUITES.items()]
    schemas += [("probe", None, ProbeConfig)]
    schemas += [(f"interventions.{family}", family, cls.Config) for family, cls in INTERVENTIONS.items()]
    for prefix, name, schema in schemas:
        types = {f.name: f.type for f in dataclasses.fields(schema)}
        for field, valid in ranges(schema).items():
            yield pytest.param(
                prefix, name, field, bad_value(types[field], valid), valid, id=f"{prefix}.{field}"
            )
    for key, valid in RUN_RANGES.items():
        yield pytest.param("", None, key, bad_value("int", valid), valid, id=key)


@pytest.mark.parametrize("prefix, name, field, value, valid", list(rl_cases()))
def test_every_ranged_field_of_an_rl_run_is_checked_when_composed(prefix, name, field, value, valid):
    overrides = {
        "agent": [f"agent={name}"],
        "env": [f"env={name}"],
        "interventions.": [f"intervention={name}"],
    }.get(prefix.split(".")[0] + ("." if "." in prefix else ""), [])
    key = f"{prefix}.{field}" if prefix else field
    with pytest.raises(ConfigError) as raised:
        compose_config([*overrides, f"{key}={value}"])
    message = str(raised.value)
    assert f"{key}={value!r}" in message and str(valid) in message and "\n" not in message


def test_all_families_are_checked_even_when_not_used():
    with pytest.raises(ConfigError, match=r"interventions.redo.tau=-1.0 is out of range: must be >= 0"):
        compose_config(["intervention=none", "interventions.redo.tau=-1"])


@pytest.mark.parametrize("field, valid", list(ranges(ShiftsConfig).items()))
def test_every_ranged_field_of_a_shifts_run_is_checked(field, valid):
    types = {f.name: f.type for f in dataclasses.fields(ShiftsConfig)}
    value = bad_value(types[field], valid)
    with pytest.raises(ValueError, match="out of range|unknown task"):
        config_from([f"{field}={value}"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["env.num_envs=0"], "env.num_envs=0 is out of range: must be >= 1"),
        (["agent.batch_size=0"], "agent.batch_size=0 is out of range: must be >= 1"),
        (["agent.lr=-1"], "agent.lr=-1.0 is out of range: must be > 0"),
        (["agent.gamma=2"], "agent.gamma=2.0 is out of range: must be in (0, 1]"),
        (["agent.epsilon_start=3"], "agent.epsilon_start=3.0 is out of range: must be in [0, 1]"),
        (["agent.updates_per_step=-1"], "agent.updates_per_step=-1.0 is out of range: must be > 0"),
        (["agent=ppo", "agent.num_minibatches=3"], "agent.num_minibatches=3 must divide the rollout"),
        (["device=cuda"], "device=cuda asked for, but torch sees no CUDA device"),
        (["agnet.lr=0.1"], "unknown key 'agnet.lr' (a typo?); every key is listed in docs/reference.md"),
        (["agent=random", "intervention=ln"], "agent 'random' has no network for intervention 'ln'"),
        (["speed.patch_conv=maybe"], "speed.patch_conv='maybe': must be true or false"),
    ],
)
def test_bad_values_exit_2_with_one_line_and_create_nothing(run, tmp_path, args, message):
    if "device=cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    result = run(*args, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_check_refuses_a_bad_value_of_any_job(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plasticity_bench",
            "sweep",
            "--check",
            "+experiment=minatar_ln_l2",
            "agent.gamma=0.99,1.5",
            f"run_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "agent.gamma=1.5 is out of range: must be in (0, 1]" in result.stderr
    assert list(tmp_path.iterdir()) == []
