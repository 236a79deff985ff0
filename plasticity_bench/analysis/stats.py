"""rliable aggregates (Agarwal et al. 2021) over score matrices of shape (runs, games).

Every interval is a stratified bootstrap 95% CI (runs resampled within each game), seeded, with
``reps`` repetitions from the caller (small in tests). Pure functions: frames in, frames out.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics

STATISTICS = {
    "iqm": metrics.aggregate_iqm,
    "mean": metrics.aggregate_mean,
    "median": metrics.aggregate_median,
    "optimality_gap": metrics.aggregate_optimality_gap,
}
METHOD = ["suite", "agent", "intervention", "variant"]  # a method is a variant (its intervention beside it)


def comparable(final: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The final scores that methods can be compared on, and one line per (suite, agent) saying
    what was left out: only the games that every variant of that suite and agent has a
    score on (each method aggregated over its own games would compare different averages), and
    in each game as many seeds per method as the method with the fewest there (seed order;
    rliable needs a rectangle)."""
    kept, notes = [], []
    for (suite, agent), rows in final.dropna(subset=["normalized_score"]).groupby(["suite", "agent"]):
        games_of = rows.groupby("variant").game.agg(set)
        shared = set.intersection(*games_of)
        dropped = {m: sorted(g - shared) for m, g in games_of.items() if g - shared}
        rows = rows[rows.game.isin(shared)]
        seeds = rows.groupby(["game", "variant"]).seed.nunique()
        fewest = seeds.groupby("game").min()
        rows = rows[rows.groupby(["game", "variant"]).seed.rank(method="first") <= rows.game.map(fewest)]
        cut = seeds[seeds > seeds.index.get_level_values("game").map(fewest)]
        if dropped or len(cut):
            parts = [f"{m} also ran {', '.join(g)}" for m, g in dropped.items()]
            parts += [f"{m} on {g} cut from {n} to {fewest[g]} seeds" for (g, m), n in cut.items()]
            notes.append(
                f"note: {suite}/{agent} compared on {len(shared)} shared game(s) "
                f"({', '.join(sorted(shared)) or 'none'}); left out: {'; '.join(parts)}"
            )
        kept.append(rows)
    return (pd.concat(kept, ignore_index=True) if kept else final.iloc[:0]), notes


def score_matrix(frame: pd.DataFrame, value: str, games: list[str] | None = None) -> np.ndarray:
    """(runs, games) matrix of ``value``; a game with more runs than another is cut to the
    smallest count (seed order), since rliable needs a rectangle (``comparable`` says so)."""
    frame = frame.dropna(subset=[value])
    games = sorted(frame.game.unique()) if games is None else games
    columns = [frame[frame.game == g].sort_values("seed")[value].to_numpy() for g in games]
    n = min(len(c) for c in columns)
    return np.stack([c[:n] for c in columns], axis=1)


def _estimates(score_dict: dict, func, reps: int, seed: int) -> tuple[dict, dict]:
    """rliable's interval estimates, reproducible: its stratified bootstrap draws its resamples from
    numpy's global RNG (``np.random.choice``), not from the ``random_state`` it is given, so that
    RNG is seeded here (and put back after)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # rliable 1.2 hands arch 7 a RandomState: deprecated
            warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
            return rly.get_interval_estimates(
                score_dict, func, reps=reps, random_state=np.random.RandomState(seed)
            )
    finally:
        np.random.set_state(state)


def aggregate(final: pd.DataFrame, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (suite, agent, intervention, variant, statistic): value, ci_low, ci_high."""
    scores = {key: score_matrix(rows, "normalized_score") for key, rows in final.groupby(METHOD)}
    scores = {k: v for k, v in scores.items() if v.size}
    func = lambda x: np.array([f(x) for f in STATISTICS.values()])  # noqa: E731
    points, intervals = _estimates({"|".join(k): v for k, v in scores.items()}, func, reps, seed)
    rows = []
    for key, matrix in scores.items():
        name = "|".join(key)
        for i, statistic in enumerate(STATISTICS):
            rows.append(
                {
                    **dict(zip(METHOD, key)),
                    "statistic": statistic,
                    "value": points[name][i],
                    "ci_low": intervals[name][0, i],
                    "ci_high": intervals[name][1, i],
                    "runs": matrix.shape[0],
                    "games": matrix.shape[1],
                }
            )
    return pd.DataFrame(rows) if rows else aggregate_columns()


def aggregate_columns() -> pd.DataFrame:
    """An empty ``aggregate`` table that still has its header (nothing to aggregate)."""
    return pd.DataFrame(columns=[*METHOD, "statistic", "value", "ci_low", "ci_high", "runs", "games"])


def probability_of_improvement(
    final: pd.DataFrame, baseline: str = "none", reps: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """P(variant > baseline) per (suite, agent), on the games both were run on. The baseline is the
    variant of the intervention ``baseline`` there (``none[env.shift.kind=...]`` in an experiment
    that overrides keys for every run); a (suite, agent) with no single such variant is skipped."""
    pairs = {}
    for (suite, agent), rows in final.groupby(["suite", "agent"]):
        baselines = (
            [baseline]
            if (rows.variant == baseline).any()
            else rows[rows.intervention == baseline].variant.unique()
        )
        if len(baselines) != 1:
            print(
                f"note: {suite}/{agent}: no single '{baseline}' variant to compare with "
                f"({len(baselines)} found); no probability of improvement"
            )
            continue
        base = rows[rows.variant == baselines[0]]
        for (intervention, variant), mine in rows[rows.variant != baselines[0]].groupby(
            ["intervention", "variant"]
        ):
            games = sorted(
                set(mine.dropna(subset=["normalized_score"]).game)
                & set(base.dropna(subset=["normalized_score"]).game)
            )
            if games:
                pairs[f"{suite}|{agent}|{intervention}|{variant}|{baselines[0]}"] = [
                    score_matrix(mine, "normalized_score", games),
                    score_matrix(base, "normalized_score", games),
                ]
    if not pairs:
        return pd.DataFrame(columns=[*METHOD, "baseline", "value", "ci_low", "ci_high"])
    points, intervals = _estimates(pairs, metrics.probability_of_improvement, reps, seed)
    return pd.DataFrame(
        [
            {
                **dict(zip(METHOD, k.split("|")[:4])),
                "baseline": k.split("|")[4],
                "value": float(points[k]),
                "ci_low": float(np.ravel(intervals[k])[0]),
                "ci_high": float(np.ravel(intervals[k])[1]),
            }
            for k in pairs
        ]
    )


def performance_profiles(
    final: pd.DataFrame, taus: np.ndarray, reps: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Fraction of runs with normalised score > tau, per method, with CIs."""
    scores = {"|".join(k): score_matrix(rows, "normalized_score") for k, rows in final.groupby(METHOD)}
    scores = {k: v for k, v in scores.items() if v.size}
    np.random.seed(seed)  # rliable's profiles draw from numpy's global RNG
    points, intervals = rly.create_performance_profile(scores, taus, reps=reps)
    return pd.DataFrame(
        [
            {
                **dict(zip(METHOD, k.split("|"))),
                "tau": tau,
                "value": points[k][i],
                "ci_low": intervals[k][0][i],
                "ci_high": intervals[k][1][i],
            }
            for k in scores
            for i, tau in enumerate(taus)
        ]
    )


def iqm_curves(
    grid: pd.DataFrame, value: str, reps: int = 500, seed: int = 0, by: tuple[str, ...] = ()
) -> pd.DataFrame:
    """IQM of ``value`` over runs x games in every grid bin, per method (and ``by`` columns)."""
    keys = [*METHOD, *by, "bin"]
    scores = {k: score_matrix(rows, value) for k, rows in grid.groupby(keys)}
    scores = {k: v for k, v in scores.items() if v.size}
    names = {k: "|".join(map(str, k)) for k in scores}
    points, intervals = _estimates(
        {names[k]: v for k, v in scores.items()}, metrics.aggregate_iqm, reps, seed
    )
    steps = grid.groupby(keys).step.first()
    return pd.DataFrame(
        [
            {
                **dict(zip(keys, k)),
                "step": steps[k],
                "value": float(points[names[k]]),
                "ci_low": float(np.ravel(intervals[names[k]])[0]),
                "ci_high": float(np.ravel(intervals[names[k]])[1]),
            }
            for k in scores
        ]
    )
