"""Read every run under a folder into three tidy frames, with schema errors that name the file
and line. A run is a directory holding ``returns.csv`` or ``metrics.csv``, or their gzipped
``.csv.gz`` (as results/ keeps large runs); shifts runs have no episodes, so no returns.csv."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from plasticity_bench.core.schema import (
    IDENTITY,
    METRICS_COLUMNS,
    NOT_TRAINING,
    RETURNS_COLUMNS,
    flat,
    legacy_columns,
)


class AnalysisError(ValueError):
    """Bad input to the analysis; the message is one line saying what and where."""


@dataclass
class Runs:
    runs: pd.DataFrame
    """One row per run: identity, ``complete`` (has its ``done`` marker), ``total_steps``, ``path``."""
    returns: pd.DataFrame
    """returns.csv rows of every run."""
    metrics: pd.DataFrame
    """metrics.csv rows of every run (``layer`` is "" when not per-layer)."""


def _read(path: Path, columns: tuple[str, ...], numeric: tuple[str, ...]) -> pd.DataFrame:
    """One CSV of the contract; a file written before runs had variants (no ``variant`` column)
    reads as variant = intervention."""
    with gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = tuple(rows[0]) if rows else ()
    if header not in (columns, legacy_columns(columns)):
        found = ",".join(rows[0]) if rows else "an empty file"
        raise AnalysisError(f"{path}:1: header is {found!r}; expected {','.join(columns)!r}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise AnalysisError(
                f"{path}:{number}: {len(row)} fields, expected {len(header)} ({','.join(header)})"
            )
    frame = pd.DataFrame(rows[1:], columns=list(header))
    if "variant" not in frame:
        frame.insert(header.index("intervention") + 1, "variant", frame["intervention"])
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & ~frame[column].str.lower().isin(["nan", "inf", "-inf"])
        if bad.any():
            line = int(bad.to_numpy().argmax()) + 2
            raise AnalysisError(f"{path}:{line}: {column} is {frame[column][line - 2]!r}, not a number")
        frame[column] = values
    return frame


def load_runs(root: str | Path) -> Runs:
    root = Path(root)
    if not root.is_dir():
        raise AnalysisError(f"{root} is not a directory of runs")
    paths = sorted(
        {
            p.parent
            for name in ("returns.csv", "metrics.csv", "returns.csv.gz", "metrics.csv.gz")
            for p in root.rglob(name)
        }
    )
    if not paths:
        raise AnalysisError(
            f"no runs under {root} (a run is a directory with returns.csv or metrics.csv; see README)"
        )
    runs, returns, metrics = [], [], []
    for path in paths:
        r_path = _csv(path, "returns")
        r = (
            _read(r_path, RETURNS_COLUMNS, ("seed", "step", "episode_return", "episode_length"))
            if r_path.exists()
            else pd.DataFrame(columns=list(RETURNS_COLUMNS))
        )
        m_path = _csv(path, "metrics")
        m = (
            _read(m_path, METRICS_COLUMNS, ("seed", "step", "value"))
            if m_path.exists()
            else pd.DataFrame(columns=list(METRICS_COLUMNS))
        )
        config_path = path / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
        identity = _identity(path, r, m, config)
        last_step = max([0, *r.step.tolist(), *m.step.tolist()])
        runs.append(
            {
                **identity,
                **_shift(config),
                "experiment": experiment_key(config),
                "complete": (path / "done").exists(),
                "total_steps": int(config.get("total_steps") or last_step),
                "last_step": last_step,
                "path": str(path),
            }
        )
        if len(r):  # shifts runs have none
            returns.append(r.assign(seed=r.seed.astype(int)))
        metrics.append(m.assign(seed=m.seed.astype(int)))
    runs_frame = pd.DataFrame(runs)
    duplicated = runs_frame.duplicated(list(IDENTITY), keep=False)
    if duplicated.any():
        clash = runs_frame[duplicated].path.tolist()[:2]
        raise AnalysisError(
            f"two runs share one identity ({', '.join(clash)}); analyse them in separate folders"
        )
    returns_frame = (
        pd.concat(returns, ignore_index=True) if returns else pd.DataFrame(columns=list(RETURNS_COLUMNS))
    )
    return Runs(runs_frame, returns_frame, pd.concat(metrics, ignore_index=True))


def _csv(run: Path, name: str) -> Path:
    """``<name>.csv``, or its gzipped copy when only that exists."""
    plain = run / f"{name}.csv"
    return plain if plain.exists() or not (run / f"{name}.csv.gz").exists() else run / f"{name}.csv.gz"


def _shift(config: dict) -> dict:
    """The run's env.shift (continual RL), as columns of the runs frame; ``fresh_agent``: the run
    re-initialises its whole agent at every switch (``reset`` with ``layers=0`` and ``at_shift``),
    the baseline the continual analysis measures the other runs against."""
    shift = (config.get("env") or {}).get("shift") or {}
    reset = (config.get("interventions") or {}).get("reset") or {}
    fresh = config.get("intervention") == "reset" and reset.get("layers") == 0 and bool(reset.get("at_shift"))
    agent, env = config.get("agent") or {}, config.get("env") or {}
    rollout = int(agent.get("num_steps") or 0) * int(env.get("num_envs") or 1)
    return {
        "shift_kind": shift.get("kind", "none"),
        "shift_interval": int(shift.get("interval") or 0),
        "shift_games": ",".join(shift.get("games") or []),
        "fresh_agent": fresh,
        "rollout": rollout,
    }


# What a run and the fresh agent it is scored against share: every key of the resolved config but
# the intervention, its hyper-parameters and the keys that do not change training. The run's length
# stays (both must cover the same tasks); the seed is matched on its own column. ``speed`` (kernel
# choices of the same computation) is left out too: configs written before it existed lack it.
UNPAIRED = (
    "intervention",
    "interventions",
    "speed",
    *(k for k in NOT_TRAINING if k not in ("total_steps", "env.total_steps")),
)


def experiment_key(config: dict) -> str:
    """A short hash of what ``config`` trains apart from its intervention ("" without a config):
    runs with equal keys differ only in their intervention (analysis/continual.py pairs them)."""
    if not config:
        return ""
    kept = {
        k: v for k, v in flat(config).items() if not any(k == u or k.startswith(f"{u}.") for u in UNPAIRED)
    }
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _identity(path: Path, returns: pd.DataFrame, metrics: pd.DataFrame, config: dict) -> dict:
    """The run identity from its rows (every row carries it), or from its config if it has none."""
    rows = returns if len(returns) else metrics
    if len(rows):
        distinct = rows[list(IDENTITY)].drop_duplicates()
        if len(distinct) > 1:
            raise AnalysisError(f"{path}: rows of more than one run identity in one directory")
        identity = distinct.iloc[0].to_dict()
    elif config.get("task"):  # a shifts run (shifts/train.py ShiftsConfig)
        identity = {
            "suite": "shifts",
            "game": config["task"],
            "agent": config["arch"],
            "intervention": config["intervention"],
            "variant": config.get("variant", config["intervention"]),
            "seed": config["seed"],
        }
    elif config:
        identity = {
            "suite": config["env"]["suite"],
            "game": config["env"]["game"],
            "agent": config["agent"]["name"],
            "intervention": config["intervention"],
            "variant": config.get("variant", config["intervention"]),
            "seed": config["seed"],
        }
    else:
        raise AnalysisError(f"{path}: no rows and no config.yaml; cannot tell which run it is")
    identity["seed"] = int(identity["seed"])
    return identity
