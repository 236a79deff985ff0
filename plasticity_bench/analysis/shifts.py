"""Figures and a table for the shifts suite: end-of-task metrics against the task index, one
figure per task sequence, a line per variant (mean over seeds, 95% bootstrap CI band)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from plasticity_bench.analysis import plots

# what the figures show, in panel order; the first that a run logs of the first pair is used
SHOWN = [
    "train_accuracy",
    "fvu",
    "train_loss",
    "probe_loss",
    "param_norm",
    "dormant_frac@0.0",
    "zombie_frac",
    "feature_srank",
]


def per_task(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, task, metric): the whole-network value logged at the end of each task."""
    rows = metrics[(metrics.suite == "shifts") & (metrics.layer.fillna("") == "")]
    tasks = rows[rows.metric == "task"][["game", "agent", "intervention", "variant", "seed", "step", "value"]]
    tasks = tasks.rename(columns={"value": "task"}).astype({"task": int})
    shown = rows[rows.metric.isin(SHOWN)]
    return shown.merge(tasks, on=["game", "agent", "intervention", "variant", "seed", "step"])[
        ["game", "agent", "intervention", "variant", "seed", "task", "metric", "value"]
    ]


def figures(metrics: pd.DataFrame, out: Path, reps: int, seed: int) -> tuple[pd.DataFrame, list[Path]]:
    table, written = per_task(metrics), []
    for (game, agent), rows in table.groupby(["game", "agent"]):
        order = [m for m in SHOWN if m in set(rows.metric)]
        palette = plots._palette(rows)
        grid = sns.relplot(
            rows,
            x="task",
            y="value",
            hue="variant",
            col="metric",
            col_order=order,
            col_wrap=min(4, len(order)),
            kind="line",
            palette=palette,
            height=2.6,
            aspect=1.25,
            errorbar=("ci", 95),
            n_boot=reps,
            seed=seed,
            facet_kws={"sharey": False},
        )
        grid.set_titles("{col_name}")
        grid.set_axis_labels("task", "")
        seeds = rows.groupby("variant").seed.nunique()
        count = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
        grid.figure.suptitle(
            f"shifts / {game} ({agent}): end of each task, mean over {count} seeds, 95% bootstrap CI",
            y=1.0,
            va="bottom",
        )
        written += plots.save(grid.figure, out, f"shifts_{game}_{agent}")
    return table, written


# the table's columns: the end-of-task value of each, at the first task, a middle one and the last
TABLED = ["train_accuracy", "fvu", "probe_loss", "dormant_frac@0.0", "feature_srank"]


def markdown(table: pd.DataFrame) -> str:
    """One markdown table per task sequence: each variant's end-of-task values at the first, the
    middle and the last task (mean over seeds), so the page shows where a variant falls behind."""
    parts = []
    for (game, agent), rows in table.groupby(["game", "agent"]):
        tasks = sorted(rows.task.unique())
        shown = [tasks[0], tasks[len(tasks) // 2], tasks[-1]]
        metrics = [m for m in TABLED if m in set(rows.metric)]
        means = rows[rows.task.isin(shown)].groupby(["variant", "metric", "task"]).value.mean()
        seeds = rows.groupby("variant").seed.nunique()
        header = ["variant", "seeds", *(f"{m} (tasks {', '.join(map(str, shown))})" for m in metrics)]
        lines = [
            f"### shifts / {game} ({agent})",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for variant in sorted(rows.variant.unique()):
            cells = [
                " / ".join(f"{means.get((variant, m, t), float('nan')):.3g}" for t in shown) for m in metrics
            ]
            lines.append(f"| {variant} | {seeds[variant]} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    note = (
        "End of task values (mean over seeds), written by `make figures` from the runs' metrics.csv; "
        "every task's value is in shifts_per_task.csv."
    )
    return note + "\n\n" + "\n\n".join(parts) + "\n"
