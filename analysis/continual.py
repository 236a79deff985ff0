"""Continual RL runs (``env.shift``): how well each task visit is learned, against the first visit
of the same game (game_cycle) or of task 0 (the other kinds): a ratio below 1 on later visits is
the plasticity loss the suite is about.

Task t covers agent steps (t x interval, (t + 1) x interval]; an episode belongs to the task in
which it ended (an episode cut by a switch ends there).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import plots, stats
from analysis.scores import step_grid

METHOD_RUN = ["suite", "game", "agent", "intervention", "variant", "seed"]


def visits(runs: pd.DataFrame, returns: pd.DataFrame, last: float = 0.25) -> pd.DataFrame:
    """One row per run and task visit: the mean return of the episodes that ended in the visit's
    last ``last`` fraction of steps, and that of the first visit of the same game (or task 0)."""
    rows = []
    shifting = runs[(runs.shift_kind != "none") & (runs.shift_interval > 0)]
    for _, run in shifting.iterrows():
        mine = returns.merge(pd.DataFrame([run[METHOD_RUN]]), on=METHOD_RUN)
        interval, games = run.shift_interval, run.shift_games.split(",") if run.shift_games else []
        cycle = len(games) if run.shift_kind == "game_cycle" else 0
        task_of = (mine.step - 1) // interval
        late = mine.step > task_of * interval + (1 - last) * interval
        means = mine[late].groupby(task_of[late]).episode_return.mean()
        for task in range(int(np.ceil(run.last_step / interval))):
            first = task % cycle if cycle else 0
            rows.append({**run[METHOD_RUN].to_dict(), "task": task,
                         "task_game": games[task % cycle] if cycle else run.game, "visit": task // cycle if cycle else task,
                         "final_return": means.get(task, np.nan), "first_visit_return": means.get(first, np.nan)})
    table = pd.DataFrame(rows)
    if len(table):
        table["ratio"] = table.final_return / table.first_visit_return.where(table.first_visit_return > 0)
    return table


def later_visit_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and task game: the mean ratio over its visits after the first, as the score
    ``stats.aggregate`` takes (games = task games, so the CIs are over seeds and games). Only the
    games that have a ratio in every run of the same suite and agent are kept (a first visit that
    scored 0 has none), so that every variant is scored on the same games and seeds."""
    later = table[table.visit > 0].dropna(subset=["ratio"])
    score = later.groupby(["suite", "agent", "intervention", "variant", "seed", "task_game"]).ratio.mean().reset_index()
    runs = table.groupby(["suite", "agent"])[["variant", "seed"]].apply(lambda f: len(f.drop_duplicates()))
    rated = score.groupby(["suite", "agent", "task_game"]).size()
    everywhere = [key for key, count in rated.items() if count == runs[key[:2]]]
    score = score[score.set_index(["suite", "agent", "task_game"]).index.isin(everywhere)]
    return score.rename(columns={"task_game": "game", "ratio": "normalized_score"})


def ratio_table(table: pd.DataFrame, reps: int, seed: int) -> pd.DataFrame:
    """Per (suite, agent, variant): IQM, mean and median of the later-visit ratios, 95% CIs
    (stratified bootstrap over seeds within task games)."""
    return stats.aggregate(later_visit_ratios(table), reps, seed)


def figures(runs, out: Path, bins: int, reps: int, curve_reps: int, seed: int
            ) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """(the visits table, the ratio table, the figure files)."""
    table = visits(runs.runs, runs.returns)
    written = []
    if table.empty:
        return table, pd.DataFrame(), written
    ratios = later_visit_ratios(table)
    aggregates = ratio_table(table, reps, seed)
    for (suite, agent), shifted in runs.runs[runs.runs.shift_kind != "none"].groupby(["suite", "agent"]):
        mine = runs.returns.merge(shifted[METHOD_RUN], on=METHOD_RUN)
        horizon, interval = int(shifted.total_steps.max()), int(shifted.shift_interval.min())
        grid = step_grid(mine, "episode_return", bins, [*stats.METHOD, "game", "seed"], horizon)
        curve = stats.iqm_curves(grid, "episode_return", curve_reps, seed).assign(panel=f"{suite} / {agent}")
        figure = plots.curves(curve, "panel", "IQM episode return (raw score)",
                              f"{suite} / {agent}: continual runs, task switches every {interval:,} steps (dotted)")
        for ax in figure.axes:
            for switch in range(interval, horizon, interval):
                ax.axvline(switch, color="grey", linestyle=":", linewidth=0.8)
        written += plots.save(figure, out, f"{suite}_{agent}_continual_returns")
        rows = aggregates[(aggregates.suite == suite) & (aggregates.agent == agent)] if len(ratios) else ratios
        if len(rows):
            iqm = rows[rows.statistic == "iqm"].assign(panel="IQM of later / first visit")
            written += plots.save(plots.interval_bars(iqm, "panel", "return ratio (1 = as well as the first visit)",
                                                      f"{suite} / {agent}: later task visits against the first "
                                                      "(95% CIs over seeds and games)"), out,
                                  f"{suite}_{agent}_continual_ratio")
    plt.close("all")
    return table, aggregates, written
