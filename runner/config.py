"""Compose the run config with Hydra and turn every bad input into a one-line ConfigError."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import agents
import interventions
from probes import ProbeConfig
from envs import SUITES, UnknownChoice, check_game

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# Keys that may change between a run and its resumption without changing the run itself.
# Probes never change training (they work on copies with their own RNG), so they are one.
RESUMABLE_CHANGES = ("total_steps", "device", "threads", "log.progress", "checkpoint.interval", "run_dir", "probe")


class ConfigError(ValueError):
    """A bad command line or config; the message is one line naming the valid choices."""


class RunError(RuntimeError):
    """A run that cannot go on; the message says why and what to do, in one line."""


def register_schemas() -> None:
    """Typed defaults (the dataclasses) become Hydra schemas that the YAML files extend."""
    store = ConfigStore.instance()
    for name, cls in agents.AGENTS.items():
        store.store(group="agent", name=f"{name}_schema", node=cls.Config)
    for suite, (config_cls, _, _) in SUITES.items():
        store.store(group="env", name=f"{suite}_schema", node=config_cls)
    store.store(group="interventions", name="defaults", node=interventions.params_schema())
    store.store(group="probe", name="probe_schema", node=ProbeConfig)


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _check_group_overrides(overrides: list[str]) -> None:
    for override in overrides:
        key, _, value = override.partition("=")
        group = {"agent": "agent", "env": "env", "suite": "env"}.get(key.lstrip("+~"))
        if group and value not in choices(group):
            label = "agent" if group == "agent" else "suite"
            raise ConfigError(f"unknown {label} '{value}'; valid: {', '.join(choices(group))}")


def compose_config(overrides: list[str]) -> DictConfig:
    """The resolved config of one run, validated (agent, suite, game, intervention)."""
    register_schemas()
    _check_group_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as error:
        raise _config_error(error) from None
    return validate(cfg)


def _config_error(error: Exception) -> ConfigError:
    cause = str(error.__cause__).splitlines()[0] if error.__cause__ else ""
    message = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    message = f"{message} ({cause})" if cause and cause not in message else message
    return ConfigError(f"invalid config or override: {message}")


def validate(cfg: DictConfig) -> DictConfig:
    """Resolve ``cfg`` and check what Hydra cannot: game, intervention, value ranges."""
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as error:
        raise _config_error(error) from None
    try:
        cfg.env.game = check_game(cfg.env.suite, cfg.env.game)
        composition = interventions.Composition(cfg.intervention, cfg.interventions)  # names and hyper-parameters
    except (UnknownChoice, ValueError) as error:
        raise ConfigError(str(error)) from None
    shifting = composition.acts_at_shifts()
    if shifting:
        raise ConfigError(f"interventions.{shifting[0]}.at_shift=true needs task switches, which only the shifts "
                          f"suite has (make shifts); in an RL run use interventions.{shifting[0]}.interval")
    for key in ("seed", "total_steps", "log.interval", "checkpoint.interval", "probe.interval", "probe.steps",
                "probe.batch_size", "probe.entk_batch"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")
    if cfg.probe.optimizer not in ("adam", "agent"):
        raise ConfigError(f"unknown probe.optimizer '{cfg.probe.optimizer}'; valid: adam, agent")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device '{cfg.device}'; valid: auto, cpu, cuda")
    return cfg


def run_path(cfg: DictConfig) -> Path:
    """RUN_DIR/<suite>/<game>/<agent>/<intervention>/seed<k> (the contract)."""
    return Path(cfg.run_dir) / cfg.env.suite / cfg.env.game / cfg.agent.name / cfg.intervention / f"seed{cfg.seed}"


def config_differences(saved: DictConfig, new: DictConfig, resumable: tuple[str, ...] = RESUMABLE_CHANGES) -> list[str]:
    """Keys whose values differ, apart from those a resumed run may change (``resumable``)."""
    a, b = OmegaConf.to_container(saved), OmegaConf.to_container(new)
    # Only the families this run uses matter: a newer version adding a family stays resumable.
    used = set(interventions.split_name(new.intervention))
    for d in (a, b):
        d["interventions"] = {f: v for f, v in (d.get("interventions") or {}).items() if f in used}
    for key in resumable:
        for d in (a, b):
            *parents, leaf = key.split(".")
            for p in parents:
                d = d.get(p, {})
            d.pop(leaf, None)
    return [f"{k}: {va!r} -> {vb!r}" for k, va, vb in _flat_diff(a, b)]


def _flat_diff(a, b, prefix=""):
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from _flat_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            yield f"{prefix}{key}", va, vb
