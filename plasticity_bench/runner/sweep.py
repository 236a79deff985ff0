"""``python -m plasticity_bench sweep --multirun +experiment=NAME [overrides]``: the runs of an experiment
(games x seeds x interventions, ``configs/experiment/NAME.yaml``) as a Hydra multirun, launched
by ``hydra/launcher=local`` (joblib processes on this machine) or ``slurm`` (submitit).

Each job is one ordinary run in its contract directory: relaunching a sweep resumes unfinished
runs and skips finished ones (their ``done`` marker). ``make sweep`` is the front door;
``python -m plasticity_bench sweep --plan +experiment=NAME [overrides]`` lists the jobs and their state
without launching anything; ``--check`` validates every swept value (what make runs first).
"""

from __future__ import annotations

import itertools
import math
import sys

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from plasticity_bench.runner.config import (
    CONFIG_DIR,
    ConfigError,
    compose_config,
    register_schemas,
    run_path,
    validate,
    whole_numbers,
)
from plasticity_bench.runner.loop import Run, RunError
from plasticity_bench.runner.population import Population, member_configs

register_schemas()  # before Hydra composes: the YAML files extend the typed schemas


class RunFailed(RuntimeError):
    """One job of the sweep failed; Hydra reports it, and the other jobs carry on."""


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def run_one(cfg: DictConfig) -> int:
    try:
        cfg = validate(cfg)
        code = (Population(cfg) if cfg.population > 1 else Run(cfg)).train()
    except (ConfigError, RunError) as error:
        raise RunFailed(str(error)) from None
    if code != 0:
        raise RunFailed(f"run stopped with exit code {code}; relaunch the sweep to resume it")
    return code


def sweep_axes(arguments: list[str]) -> dict[str, list[str]]:
    """key -> its overrides (one per value), from the experiment's ``hydra.sweeper.params`` then
    the command line, the later value of a key winning (as Hydra's basic sweeper does)."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(arguments) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        params = (
            compose(config_name="config", overrides=fixed, return_hydra_config=True).hydra.sweeper.params
            or {}
        )
    axes: dict[str, list[str]] = {}
    for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + arguments):
        key = o.get_key_element()
        axes[key] = (
            [f"{key}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
        )
    return axes


def check(axes: dict[str, list[str]]) -> int:
    """Validate every value of every axis (one config each, not every combination: fast for
    hundreds of jobs). Returns the number of jobs."""
    first = {key: values[0] for key, values in axes.items()}
    for key, values in axes.items():
        for value in values:
            compose_config(list({**first, key: value}.values()))
    return math.prod(len(values) for values in axes.values())


def plan(axes: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(run directory, state) of every job, in launch order."""
    jobs = []
    for job in itertools.product(*axes.values()):
        cfg = compose_config(list(job))
        for member in member_configs(cfg):  # a population's seeds, each its own run
            d = run_path(member)
            state = "done" if (d / "done").exists() else "resume" if (d / "checkpoint").exists() else "new"
            jobs.append((str(d), state))
    return jobs


def pack_seeds(argv: list[str]) -> list[str]:
    """``population=K`` (make sweep POPULATION=K): the experiment's seeds in populations of K
    consecutive seeds, one job each (``seed=0,1,2,3`` with K=2: jobs ``seed=0`` and ``seed=2``)."""
    sizes = [a.partition("=")[2] for a in argv if a.startswith("population=")]
    if not sizes or not sizes[-1].isdigit() or int(sizes[-1]) <= 1:
        return argv  # (a bad value is the config's error)
    k = int(sizes[-1])
    overrides = [a for a in argv if not a.startswith(("-", "hydra"))]
    seeds = [int(v.partition("=")[2]) for v in sweep_axes(overrides).get("seed", ["seed=0"])]
    if len(seeds) == 1:
        raise ConfigError(
            f"population={k} packs a sweep's seeds into processes, and this sweep has one (seed="
            f"{seeds[0]}): sweep a range of seeds, e.g. seed=range({k})"
        )
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))) or len(seeds) % k:
        raise ConfigError(
            f"population={k} packs consecutive seeds in groups of {k}, and this sweep's seeds are "
            f"{seeds}: use a population size that divides {len(seeds)}, or seeds in a range"
        )
    return [*argv, "seed=" + ",".join(str(s) for s in seeds[::k])]


def main_plan(arguments: list[str], list_jobs: bool) -> int:
    try:
        axes = sweep_axes(arguments)
        if not list_jobs:
            print(f"{check(axes)} jobs; every value of every swept key checked")
            return 0
        jobs = plan(axes)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for d, state in jobs:
        print(f"{state:7s} {d}")
    print(
        f"{len(jobs)} jobs: "
        + ", ".join(f"{sum(1 for _, x in jobs if x == s)} {s}" for s in ("new", "resume", "done"))
    )
    return 0


def main(argv: list[str]) -> int:
    try:
        argv = pack_seeds([whole_numbers(a) for a in argv])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.argv = [sys.argv[0], *(whole_numbers(a) for a in argv)]  # total_steps=2.5e3 -> 2500, as for runs
    if "--plan" in argv or "--check" in argv:
        flags = ("--plan", "--check", "--multirun", "-m")
        return main_plan([whole_numbers(a) for a in argv if a not in flags], list_jobs="--plan" in argv)
    return run_one()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
