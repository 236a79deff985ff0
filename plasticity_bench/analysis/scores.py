"""Normalised scores, final scores per run, and a common step grid for curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plasticity_bench.analysis.load import AnalysisError, Runs

DATA = Path(__file__).resolve().parent / "data"
NORMALISATION = {
    "atari": "human-normalised: (score - random) / (human - random), Atari-57 table",
    "minatar": "score / MinAtar-paper DQN reference",
}


def _table(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name, comment="#").set_index("game")


def normalise(suite: str, games: pd.Series, scores: pd.Series) -> pd.Series:
    """Normalised scores of one suite; suites without a table (e.g. shifts) keep raw values."""
    if suite == "atari":
        table = _table("atari_human_random.csv")
        low, high = "random", "human"
    elif suite == "minatar":
        table = _table("minatar_reference.csv").assign(zero=0.0)
        low, high = "zero", "reference"
    else:
        return scores.astype(float)
    missing = sorted(set(games) - set(table.index))
    if missing:
        raise AnalysisError(
            f"game {missing[0]!r} is not in the {suite} normalisation table "
            f"(analysis/data/); known: {', '.join(table.index)}"
        )
    lo, hi = table.loc[games, low].to_numpy(), table.loc[games, high].to_numpy()
    return pd.Series((scores.to_numpy() - lo) / (hi - lo), index=scores.index)


def with_normalised(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame`` with ``normalized_score`` computed from ``column``, suite by suite."""
    out = frame.copy()
    out["normalized_score"] = np.nan
    for suite, rows in out.groupby("suite"):
        out.loc[rows.index, "normalized_score"] = normalise(suite, rows.game, rows[column])
    return out


def final_scores(runs: Runs, fraction: float = 0.1) -> pd.DataFrame:
    """One row per run: mean return of its episodes that ended in the last ``fraction`` of its
    steps (of its budget if complete, of the steps reached so far if still running)."""
    identity = ["suite", "game", "agent", "intervention", "variant", "seed"]
    runs_frame = runs.runs.assign(
        horizon=np.where(runs.runs.complete, runs.runs.total_steps, runs.runs.last_step)
    )
    episodes = runs.returns.merge(runs_frame[[*identity, "horizon"]], on=identity)
    late = episodes[episodes.step > episodes.horizon * (1 - fraction)]
    means = late.groupby(identity).episode_return.agg(final_return="mean", episodes="size").reset_index()
    table = runs_frame[[*identity, "complete"]].merge(means, on=identity, how="left").fillna({"episodes": 0})
    return with_normalised(table, "final_return")


def step_grid(frame: pd.DataFrame, value: str, bins: int, group: list[str], horizon: int) -> pd.DataFrame:
    """Put every run's ``value`` on one grid: ``bins`` equal bins of [0, horizon] steps; a run's
    value in a bin is the mean of its rows whose step falls in it (bin centre as ``step``).
    Binning, not interpolation: an episode return is an event, not a sampled function."""
    edges = np.linspace(0, horizon, bins + 1)
    binned = frame.assign(bin=np.clip(np.searchsorted(edges, frame.step, side="left") - 1, 0, bins - 1))
    out = binned.groupby([*group, "bin"], as_index=False)[value].mean()
    out["step"] = (edges[out["bin"]] + edges[out["bin"] + 1]) / 2
    return out
