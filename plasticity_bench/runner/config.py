"""Compose the run config with Hydra and turn every bad input into a one-line ConfigError."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plasticity_bench import agents, interventions
from plasticity_bench.agents.base import has_network
from plasticity_bench.core.ranges import Range, check, check_value
from plasticity_bench.core.schema import NOT_TRAINING
from plasticity_bench.envs import SUITES, UnknownChoice, check_game
from plasticity_bench.envs.shift import KINDS, ShiftConfig, check_shift
from plasticity_bench.probes import ProbeConfig
from plasticity_bench.runner.compose import (
    CONFIG_DIR,
    ConfigError,
    config_error,
    hydra_compose,
    whole_numbers,
)
from plasticity_bench.runner.stacked import STACKED_METHODS, stackable
from plasticity_bench.runner.store import run_directory, variant_label

# The valid values of the run-level keys of configs/config.yaml (the dataclass configs declare
# theirs on their fields: core.ranges.ranged).
RUN_RANGES = {
    "seed": Range(ge=0, integer=True),
    "population": Range(ge=1, integer=True),
    "population_kernel": Range(choices=("auto", "loop", "stacked")),
    "total_steps": Range(ge=1, integer=True),
    "threads": Range(ge=0, le=os.cpu_count() or 1, integer=True),  # (or auto: resolved first)
    "log.interval": Range(ge=1, integer=True),
    "checkpoint.interval": Range(ge=0, integer=True),
    "device": Range(choices=("auto", "cpu", "cuda")),
}


def register_schemas() -> None:
    """Typed defaults (the dataclasses) become Hydra schemas that the YAML files extend."""
    store = ConfigStore.instance()
    for name, cls in agents.AGENTS.items():
        store.store(group="agent", name=f"{name}_schema", node=cls.Config)
        if not (CONFIG_DIR / "agent" / f"{name}.yaml").exists():  # its dataclass defaults are its config
            store.store(group="agent", name=name, node=cls.Config)
    for suite, (config_cls, _, _) in SUITES.items():
        store.store(group="env", name=f"{suite}_schema", node=config_cls)
    store.store(group="interventions", name="defaults", node=interventions.params_schema())
    store.store(group="probe", name="probe_schema", node=ProbeConfig)


def choices(group: str) -> list[str]:
    """The agents and suites of the registries (agents.AGENTS, envs.SUITES)."""
    return sorted(agents.AGENTS if group == "agent" else SUITES)


def _check_group_overrides(overrides: list[str]) -> None:
    for override in overrides:
        key, _, value = override.partition("=")
        group = {"agent": "agent", "env": "env", "suite": "env"}.get(key.lstrip("+~"))
        if group and value not in choices(group):
            label = "agent" if group == "agent" else "suite"
            broken = agents.broken_note() if group == "agent" else ""
            raise ConfigError(f"unknown {label} '{value}'; valid: {', '.join(choices(group))}{broken}")


def compose_config(overrides: list[str]) -> DictConfig:
    """The resolved config of one run, validated (agent, suite, game, intervention, ranges),
    with its ``variant`` label."""
    overrides = [whole_numbers(o) for o in overrides]
    # before composing: PPO's anneal_steps follows total_steps, and would fail obscurely
    for override in overrides:
        key, _, value = override.partition("=")
        if RUN_RANGES.get(key, Range()).integer and re.fullmatch(r"[+-]?\d*\.\d*([eE][+-]?\d+)?", value):
            try:
                check_value(key, float(value), RUN_RANGES[key])
            except ValueError as error:
                raise ConfigError(str(error)) from None
    return validate(_compose(overrides))


def _compose(overrides: list[str]) -> DictConfig:
    register_schemas()
    _check_group_overrides(overrides)
    return hydra_compose("config", overrides)


@functools.lru_cache(maxsize=64)
def _defaults(suite: str, agent: str, intervention: str, game: str, total_steps: int) -> dict:
    """The config these choices give with nothing else overridden (PPO's annealing follows
    ``total_steps``, so the defaults take the run's)."""
    return OmegaConf.to_container(
        _compose(
            [
                f"env={suite}",
                f"agent={agent}",
                f"intervention={intervention}",
                f"env.game={game}",
                f"total_steps={total_steps}",
            ]
        )
    )


def rl_variant(cfg: DictConfig) -> str:
    defaults = _defaults(cfg.env.suite, cfg.agent.name, cfg.intervention, cfg.env.game, cfg.total_steps)
    return variant_label(cfg.intervention, defaults, OmegaConf.to_container(cfg), NOT_TRAINING)


def validate(cfg: DictConfig) -> DictConfig:
    """Resolve ``cfg`` and check what Hydra cannot: game, intervention, value ranges."""
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as error:
        raise config_error(error) from None
    for name, value in cfg.speed.items():  # (an unknown name is Hydra's error already)
        if not isinstance(value, bool):
            raise ConfigError(f"speed.{name}={value!r}: must be true or false")
    if cfg.threads == "auto":  # the suite's measured default (its config's default_threads)
        cfg.threads = SUITES[cfg.env.suite][0].default_threads
    for key, valid in RUN_RANGES.items():  # 2500.0 -> 2500 (a sweep's Hydra composes without compose_config)
        value = OmegaConf.select(cfg, key)
        if valid.integer and isinstance(value, float) and value.is_integer():
            OmegaConf.update(cfg, key, int(value))
    try:
        cfg.env.game = check_game(cfg.env.suite, cfg.env.game)
        # names and hyper-parameters
        composition = interventions.Composition(cfg.intervention, cfg.interventions)
    except (UnknownChoice, ValueError) as error:
        raise ConfigError(str(error)) from None
    shifting = composition.acts_at_shifts()
    if shifting and cfg.env.shift.kind == "none":
        raise ConfigError(
            f"interventions.{shifting[0]}.at_shift=true needs task switches: set env.shift.kind "
            f"(valid: {', '.join(KINDS[1:])}) or use interventions.{shifting[0]}.interval"
        )
    try:
        # env, then the run's keys, then the rest: a value set once and copied into other keys by
        # interpolation (env.total_steps -> total_steps -> agent.anneal_steps) is named as it was set
        check(cfg.env, SUITES[cfg.env.suite][0], "env.")
        for key, valid in RUN_RANGES.items():
            check_value(key, OmegaConf.select(cfg, key), valid)
        check(cfg.agent, agents.AGENTS[cfg.agent.name].Config, "agent.")
        check(cfg.env.shift, ShiftConfig, "env.shift.")
        check_shift(cfg.env, bool(cfg.agent.get("reward_clip", False)))
        check(cfg.probe, ProbeConfig, "probe.")
        for family, intervention_cls in interventions.INTERVENTIONS.items():  # used or not
            check(cfg.interventions[family], intervention_cls.Config, f"interventions.{family}.")
        agent_cls = agents.AGENTS[cfg.agent.name]
        if cfg.intervention != "none" and not has_network(agent_cls):
            raise ConfigError(
                f"agent '{cfg.agent.name}' has no network for intervention '{cfg.intervention}' "
                "to act on; use intervention=none"
            )
        if cfg.population_kernel == "stacked" and not stackable(agent_cls):
            raise ConfigError(
                "population_kernel=stacked needs an agent that splits its update "
                f"({', '.join(STACKED_METHODS)}: dqn, ppo); agent '{cfg.agent.name}' learns with "
                "population_kernel=loop"
            )
        if cfg.population_kernel == "stacked" and composition.unstackable():
            raise ConfigError(
                f"population_kernel=stacked cannot take {composition.unstackable()[0]} (its network does "
                "not run under torch.func.vmap, or it adds a loss term); use population_kernel=loop"
            )
        if hasattr(agent_cls, "check_config"):  # constraints across keys, e.g. PPO's minibatches
            agent_cls.check_config(cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda asked for, but torch sees no CUDA device; use device=cpu or auto")
    if cfg.variant == "auto":
        cfg.variant = rl_variant(cfg)
    try:
        run_path(cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return cfg


def run_path(cfg: DictConfig) -> Path:
    """RUN_DIR/<suite>/<game>/<agent>/<variant>/seed<k> (the contract); ValueError for a part that
    would not name one directory (runner.store.run_directory)."""
    return run_directory(
        cfg.run_dir,
        ("env.suite", cfg.env.suite),
        ("env.game", cfg.env.game),
        ("agent", cfg.agent.name),
        ("variant", cfg.variant),
        ("seed", f"seed{cfg.seed}"),
    )
