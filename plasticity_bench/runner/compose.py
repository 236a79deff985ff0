"""Hydra composition shared by every kind of run (the RL runs of ``configs/config.yaml``, the
shifts runs of ``configs/shifts.yaml``): one config directory, one way to turn Hydra's and
OmegaConf's errors into a one-line ``ConfigError``. It imports no agent or env, so the shifts
suite composes through it without loading them."""

from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# Keys that may change between a run and its resumption without changing what it trained so far:
# its length (total_steps; a shifts run's tasks), where and how fast it runs, what it prints, and
# the probes (they work on copies with their own RNG). One list for every kind of run.
RESUMABLE_CHANGES = (
    "total_steps",
    "agent.anneal_steps",  # PPO's learning-rate decay follows total_steps (configs/agent/ppo.yaml)
    "tasks",
    "device",
    "threads",
    "population",
    "population_kernel",
    "log.progress",
    "log.tensorboard",
    "checkpoint.interval",
    "run_dir",
    "probe",
    "variant",
)
FLOAT_LITERAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(?=[eE]))([eE][+-]?\d+)?")


class ConfigError(ValueError):
    """A bad command line or config; the message is one line naming the valid choices."""


def whole_numbers(override: str) -> str:
    """``total_steps=2.5e3`` -> ``total_steps=2500`` (and ``2500.0`` likewise): a whole number
    written as a float is an int (YAML reads it as a float, which an integer key refuses; a float
    key takes the int); other values are as given."""
    key, sep, value = override.partition("=")
    if sep and FLOAT_LITERAL.fullmatch(value) and float(value).is_integer():
        return f"{key}={int(float(value))}"
    return override


def config_error(error: Exception) -> ConfigError:
    cause = str(error.__cause__).splitlines()[0] if error.__cause__ else ""
    message = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    message = f"{message} ({cause})" if cause and cause not in message else message
    unknown = re.search(r"Could not override '([^']+)'.*(not in struct|not in '\w+')", message)
    if unknown:  # Hydra would advise +key=value, which only hides the typo
        return ConfigError(f"unknown key '{unknown[1]}' (a typo?); every key is listed in docs/reference.md")
    return ConfigError(f"invalid config or override: {message}")


def hydra_compose(config_name: str, overrides: list[str]) -> DictConfig:
    """``CONFIG_DIR/<config_name>.yaml`` with ``overrides``, resolved; a bad override or value is a
    one-line ConfigError."""
    try:
        if GlobalHydra.instance().is_initialized():  # inside a sweep job: Hydra already reads CONFIG_DIR
            cfg = compose(config_name=config_name, overrides=overrides)
        else:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose(config_name=config_name, overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as error:
        raise config_error(error) from None
    return cfg
