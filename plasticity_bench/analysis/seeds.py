"""Statistics over a handful of seeds, each named for what it is.

A cell (one variant of one experiment on one game) is summarised by the mean over its seeds with
its standard error (the form of C-CHAIN's and TRAC's tables) and the per-seed values. An interval is
an IQM with a 95% bootstrap CI (rliable) only when the cell has at least ``MIN_SEEDS_FOR_CI`` seeds:
with 3 seeds, a resample that repeats the lowest seed has probability 1/27 > 2.5%, so a "95% CI" is
exactly [min, max]; below that count the interval is printed as what it is, the seeds' range.

Differences are paired: a variant's value minus the baseline's (``none``, or the fresh agent) of the
same experiment and seed (same tasks), with a two-sided paired t-test over those seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from plasticity_bench.analysis import stats

MIN_SEEDS_FOR_CI = 5
TEST = "paired t-test, two-sided"
LEVEL = 0.05  # the p-value under which a difference is called established
CELL = ["suite", "agent", "game", "experiment", "intervention", "variant"]
BASELINES = {
    "none": lambda frame: (frame.intervention == "none") & ~frame.fresh_agent,
    "fresh": lambda frame: frame.fresh_agent,
}


def summarise(frame: pd.DataFrame, value: str, reps: int, seed: int) -> pd.DataFrame:
    """One row per cell of ``frame`` (one row per run: CELL, ``seed``, ``fresh_agent``, ``value``):
    seeds, mean, se, per_seed, interval (``IQM 95% CI`` or ``range``), low, high, and for each
    baseline ``minus_<b>`` (mean paired difference), ``minus_<b>_se``, ``minus_<b>_pairs`` and
    ``minus_<b>_p``."""
    frame = frame.dropna(subset=[value])
    rows = []
    for key, cell in frame.groupby(CELL, sort=True):
        cell = cell.sort_values("seed")
        values = cell[value].to_numpy(float)
        row = {
            **dict(zip(CELL, key)),
            "fresh_agent": bool(cell.fresh_agent.iloc[0]),
            "seeds": len(values),
            "mean": values.mean(),
            "se": _se(values),
            "per_seed": ", ".join(f"{s}: {v:.4g}" for s, v in zip(cell.seed, values)),
        }
        if len(values) >= MIN_SEEDS_FOR_CI:
            iqm = stats.aggregate(cell.assign(normalized_score=values), reps, seed)
            iqm = iqm[iqm.statistic == "iqm"].iloc[0]
            row.update(interval="IQM 95% CI", center=iqm.value, low=iqm.ci_low, high=iqm.ci_high)
        else:
            row.update(interval="range", center=np.nan, low=values.min(), high=values.max())
        same = (frame[CELL[:4]] == pd.Series(dict(zip(CELL[:4], key)))).all(axis=1)
        for name, chosen in BASELINES.items():
            baseline = frame[same & chosen(frame)][["seed", value]]
            paired = cell[["seed", value]].merge(baseline, on="seed", suffixes=("", "_baseline"))
            row.update(
                difference(paired[value].to_numpy(float), paired[f"{value}_baseline"].to_numpy(float), name)
            )
        rows.append(row)
    return pd.DataFrame(rows)


def difference(values: np.ndarray, baseline: np.ndarray, name: str) -> dict:
    """Mean paired difference, its standard error, the pair count and the paired t-test's p."""
    d = values - baseline
    p = scipy_stats.ttest_rel(values, baseline).pvalue if len(d) >= 2 and np.ptp(d) > 0 else np.nan
    return {
        f"minus_{name}": d.mean() if len(d) else np.nan,
        f"minus_{name}_se": _se(d),
        f"minus_{name}_pairs": len(d),
        f"minus_{name}_p": p,
    }


def _se(values: np.ndarray) -> float:
    return values.std(ddof=1) / np.sqrt(len(values)) if len(values) >= 2 else np.nan


def number(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.4g}"


def signed(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:+.4g}"


def common_keys(labels: pd.Series) -> set[str]:
    """The keys every variant label carries (``none[env.shift.kind=x]`` -> ``env.shift.kind=x``)."""
    keys = labels.map(lambda v: set(v.partition("[")[2].rstrip("]").split(",")) - {""})
    return set.intersection(*keys) if len(keys) else set()


def shortened(labels: pd.Series) -> pd.Series:
    """Variant labels without the keys that every one of them carries (``none[env.shift.kind=x]``
    and ``ln[env.shift.kind=x,ln.k=1]`` -> ``none``, ``ln[ln.k=1]``): what tells the rows apart."""
    common = common_keys(labels)

    def short(label: str) -> str:
        name, _, inner = label.partition("[")
        kept = [k for k in inner.rstrip("]").split(",") if k and k not in common]
        return f"{name}[{','.join(kept)}]" if kept else name

    return labels.map(short)


def markdown(summary: pd.DataFrame) -> str:
    """The summary of one game as a markdown table (rows: the fresh agent, none, then the rest);
    labels shortened to what tells the rows apart (the common keys said under the table)."""
    order = summary.assign(
        rank=np.where(summary.fresh_agent, 0, np.where(summary.intervention == "none", 1, 2)),
        short=shortened(summary.variant),
    )
    lines = [
        "| variant | seeds | mean ± SE | per seed | interval | − none (paired) | p | − fresh (paired) | p |",
        "|---|---:|---|---|---|---|---:|---|---:|",
    ]
    for row in order.sort_values(["rank", "variant"]).itertuples():
        label = f"`{row.short}`" + (" (fresh agent)" if row.fresh_agent else "")
        interval = (
            f"IQM {number(row.center)} [{number(row.low)}, {number(row.high)}]"
            if row.interval != "range"
            else f"range [{number(row.low)}, {number(row.high)}]"
        )
        cells = [label, str(row.seeds), f"{number(row.mean)} ± {number(row.se)}", row.per_seed, interval]
        for name in BASELINES:
            itself = (
                row.fresh_agent if name == "fresh" else row.intervention == "none" and not row.fresh_agent
            )
            pairs = 0 if itself else getattr(row, f"minus_{name}_pairs")
            diff = f"{signed(getattr(row, f'minus_{name}'))} ± {number(getattr(row, f'minus_{name}_se'))}"
            cells += [diff, number(getattr(row, f"minus_{name}_p"))] if pairs else ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    common = sorted(common_keys(summary.variant))
    return "\n".join(lines) + "\n" + (f"\nEvery row also has `{','.join(common)}`.\n" if common else "")


def established(summary: pd.DataFrame) -> str:
    """One sentence of the differences from each baseline with p < LEVEL, and of those without."""
    parts = []
    summary = summary.assign(variant=shortened(summary.variant))
    for name, word in (("none", "`none`"), ("fresh", "the fresh agent")):
        compared = ~summary.fresh_agent & ((summary.intervention != "none") | (name == "fresh"))
        rows = summary[compared & (summary[f"minus_{name}_pairs"] >= 2)]
        held = [
            f"`{r.variant}` {'above' if getattr(r, f'minus_{name}') > 0 else 'below'} {word} "
            f"({signed(getattr(r, f'minus_{name}'))}, p = {number(getattr(r, f'minus_{name}_p'))})"
            for r in rows.itertuples()
            if getattr(r, f"minus_{name}_p") < LEVEL
        ]
        open_ = [f"`{r.variant}`" for r in rows.itertuples() if not getattr(r, f"minus_{name}_p") < LEVEL]
        if held or open_:
            parts.append(
                f"Against {word}: "
                + ("; ".join(held) or "no difference established")
                + (f"; not established (p ≥ {LEVEL}): {', '.join(open_)}" if open_ else "")
            )
    return (f"Paired differences ({TEST}). " + ". ".join(parts) + ".\n") if parts else ""
