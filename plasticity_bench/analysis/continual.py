"""Continual RL runs (``env.shift``), measured as the literature measures plasticity loss: each
task against a *fresh agent* trained on the same task for the same budget (C-CHAIN, Tang et al.
2025; TRAC, Muppidi et al. 2024; Juliani & Ash 2024), not against the run's own first visit,
which rewards transfer and so hides a loss.

The fresh agent is the run with ``reset`` of ``layers=0`` at every switch (``at_shift=true``): it
re-initialises every parameter and its optimizer (interventions/reset.py), so each task is
learned from scratch, on the very tasks (offsets, game order, env seeds) the other runs see. A
run's fresh agents are found from the runs' own ``config.yaml`` (analysis/load.py
``experiment_key``): the runs whose resolved config equals it but for the intervention and its
keys; labels are names, not data. Until the first switch both runs are the same run, so task 0 is
left out of the scores.

Per run and task (``tables/continual.csv``): ``final_return``, the mean return of the episodes
that ended in the task's last quarter; ``fresh_return``, the fresh agent's over the same window
*averaged over its seeds* (a single collapsed fresh run does not decide a task);
``vs_fresh = (final - random) / (fresh - random)`` with the random policy's score of the task's
game (``analysis/data/random_scores.csv``): 1 = as good as learning the task from scratch, below
1 = plasticity lost; ``vs_fresh_own_seed``, the same against the fresh run of the same seed;
``return_minus_fresh``, the raw difference. A task whose pooled fresh return does not clear random
by ``margin`` x |random| is left out for every variant by that rule alone, and said so in one line.
``transfer_ratio`` (final / the first visit of the same game) is kept as a transfer view only. Per
run and game (``tables/continual_runs.csv``): the average return over the run (C-CHAIN's
statistic), per task game for a run that cycles games (raw scores of different games are never
averaged). The summaries (analysis/seeds.py) give mean +- SE over seeds and paired differences.

Task t covers agent steps (t x interval, (t + 1) x interval]; an episode belongs to the task in
which it ended (an episode cut by a switch ends there).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from plasticity_bench.analysis import plots, seeds, stats
from plasticity_bench.analysis.scores import DATA, step_grid

METHOD_RUN = ["suite", "game", "agent", "intervention", "variant", "seed"]
FRESH_MARGIN = 0.25  # a task counts when the fresh agents' mean clears random by 25% of |random|
SE_LABEL = "mean ± standard error over seeds"


def random_scores() -> pd.DataFrame:
    """(suite, game) -> the uniformly random policy's mean return (envs/random_scores.py)."""
    return pd.read_csv(DATA / "random_scores.csv", comment="#").set_index(["suite", "game"])["random"]


def continual_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[(runs.shift_kind != "none") & (runs.shift_interval > 0)]


def scored_tasks(run) -> int:
    """Tasks that the run has finished: all of them once it is done, else those it has passed."""
    if run.complete:
        return int(np.ceil(run.total_steps / run.shift_interval))
    return int(run.last_step // run.shift_interval)


def visits(runs: pd.DataFrame, returns: pd.DataFrame, last: float = 0.25) -> pd.DataFrame:
    """One row per continual run and task: the mean return of the episodes that ended in the task's
    last ``last`` fraction of steps, the first visit's of the same game (game_cycle; else task 0's)
    and ``transfer_ratio``, the one over the other."""
    rows = []
    for _, run in continual_runs(runs).iterrows():
        mine = returns.merge(pd.DataFrame([run[METHOD_RUN]]), on=METHOD_RUN)
        interval, games = run.shift_interval, run.shift_games.split(",") if run.shift_games else []
        cycle = len(games) if run.shift_kind == "game_cycle" else 0
        task_of = (mine.step - 1) // interval
        late = mine.step > task_of * interval + (1 - last) * interval
        means = mine[late].groupby(task_of[late]).episode_return.mean()
        for task in range(scored_tasks(run)):
            first = task % cycle if cycle else 0
            rows.append(
                {
                    **run[METHOD_RUN].to_dict(),
                    "task": task,
                    "task_game": games[task % cycle] if cycle else run.game,
                    "visit": task // cycle if cycle else task,
                    "final_return": means.get(task, np.nan),
                    "first_visit_return": means.get(first, np.nan),
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        table["transfer_ratio"] = table.final_return / table.first_visit_return.where(
            table.first_visit_return > 0
        )
    return table


def against_fresh(
    table: pd.DataFrame, runs: pd.DataFrame, random: pd.Series, margin: float = FRESH_MARGIN
) -> tuple[pd.DataFrame, list[str]]:
    """``table`` (from ``visits``) with the fresh agents' returns (pooled over their seeds, and the
    same seed's), ``random_return``, ``vs_fresh``, ``vs_fresh_own_seed``, ``return_minus_fresh`` and
    ``scored`` (a task after the first that the rule keeps); and one line for every experiment
    without a fresh agent and every task the rule leaves out."""
    notes = []
    keyed = table.merge(continual_runs(runs)[[*METHOD_RUN, "experiment", "fresh_agent"]], on=METHOD_RUN)
    fresh = keyed[keyed.fresh_agent & (keyed.experiment != "")]
    pooled = fresh.groupby(["experiment", "task"]).final_return.agg(fresh_return="mean", fresh_seeds="count")
    own = fresh[["experiment", "seed", "task", "final_return"]].rename(
        columns={"final_return": "fresh_own_return"}
    )
    if own.duplicated(["experiment", "seed", "task"]).any():
        notes.append("note: more than one fresh-agent run of one experiment and seed; the first is used")
        own = own.drop_duplicates(["experiment", "seed", "task"])
    out = keyed.merge(pooled.reset_index(), on=["experiment", "task"], how="left")
    out = out.merge(own, on=["experiment", "seed", "task"], how="left")
    out["random_return"] = [random.get((s, g), np.nan) for s, g in zip(out.suite, out.task_game)]
    span, own_span = out.fresh_return - out.random_return, out.fresh_own_return - out.random_return
    clears = (span > 0) & (span > margin * out.random_return.abs())
    out["scored"] = clears & (out.task > 0)
    out["vs_fresh"] = ((out.final_return - out.random_return) / span).where(clears)
    out["vs_fresh_own_seed"] = ((out.final_return - out.random_return) / own_span).where(own_span > 0)
    out["return_minus_fresh"] = out.final_return - out.fresh_return
    for (suite, game, agent), rows in out[out.fresh_return.isna() & (out.task > 0)].groupby(
        ["suite", "game", "agent"]
    ):
        unpaired = sorted(set(rows.variant[~rows.experiment.isin(fresh.experiment)]))
        if unpaired:
            notes.append(
                f"note: {suite}/{game}/{agent}: no fresh-agent run with the same config for "
                f"{', '.join(unpaired)} (intervention=reset interventions.reset.layers=0 "
                "interventions.reset.at_shift=true, all else equal); not scored against one"
            )
    left_out = out[(out.task > 0) & out.fresh_return.notna() & ~clears].drop_duplicates(
        ["experiment", "task"]
    )
    for row in left_out.itertuples():
        why = (
            "no random score for this game in analysis/data/random_scores.csv"
            if np.isnan(row.random_return)
            else f"the fresh agent's mean over {row.fresh_seeds} seed(s), {row.fresh_return:.4g}, does not "
            f"clear random ({row.random_return:.4g}) by {margin:.0%} of |random|"
        )
        notes.append(
            f"note: {row.suite}/{row.game}/{row.agent} task {row.task} ({row.task_game}): left out "
            f"for every variant: {why}"
        )
    return out.drop(columns=["fresh_seeds"]), notes


def vs_fresh_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and task game, the means over its scored tasks (after the first) of ``vs_fresh`` and
    ``return_minus_fresh``, and how many tasks: the per-seed values the summaries take."""
    scored = table[table.scored & table.final_return.notna()]
    keys = ["suite", "agent", "intervention", "variant", "seed", "experiment", "fresh_agent", "task_game"]
    score = scored.groupby(keys).agg(
        vs_fresh=("vs_fresh", "mean"),
        return_minus_fresh=("return_minus_fresh", "mean"),
        tasks=("task", "count"),
    )
    return score.reset_index().rename(columns={"task_game": "game"})


def run_averages(runs: pd.DataFrame, returns: pd.DataFrame) -> pd.DataFrame:
    """One row per finished continual run and game it played: the average return over the run, as
    C-CHAIN logs it: the mean return of the episodes that ended in each rollout (``agent.num_steps``
    x ``env.num_envs`` steps), averaged over the rollouts; per episode for an agent without rollouts.
    A run that cycles games gets one row per game (the rollouts of that game's tasks)."""
    shifting = continual_runs(runs)
    shifting = shifting[shifting.complete]
    columns = [
        *METHOD_RUN,
        "rollout",
        "experiment",
        "fresh_agent",
        "shift_kind",
        "shift_games",
        "shift_interval",
    ]
    mine = returns.merge(shifting[columns], on=METHOD_RUN)
    task = (mine.step - 1) // mine.shift_interval
    cycle = mine.shift_games.str.split(",")
    mine["task_game"] = [
        g[t % len(g)] if kind == "game_cycle" else game
        for g, t, kind, game in zip(cycle, task, mine.shift_kind, mine.game)
    ]
    window = np.where(mine.rollout > 0, (mine.step - 1) // mine.rollout.clip(lower=1), np.arange(len(mine)))
    keys = [*METHOD_RUN, "experiment", "fresh_agent", "task_game"]
    per_window = mine.assign(window=window).groupby([*keys, "window"]).episode_return.mean()
    table = per_window.groupby(keys).agg(average_return="mean").reset_index()
    table = table.merge(mine.groupby(keys).size().rename("episodes").reset_index(), on=keys)
    return table.drop(columns="game").rename(columns={"task_game": "game"})[
        [*METHOD_RUN, "experiment", "fresh_agent", "average_return", "episodes"]
    ]


def across_games(scores: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per run (suite, agent, variant, seed), the mean of ``value`` over the games it was scored on,
    for variants scored on more than one game; grouped by label (games differ in config)."""
    keys = ["suite", "agent", "intervention", "variant", "seed", "fresh_agent"]
    games = scores.groupby(keys[:4]).game.transform("nunique")
    mean = scores[games > 1].groupby(keys)[value].mean().reset_index()
    return mean.assign(game="all games", experiment="")


def fresh_named(frame: pd.DataFrame, fresh: set[str]) -> pd.DataFrame:
    """The fresh runs' variants named "fresh agent" on a figure (plots.short_labels names the rest)."""
    return frame.assign(variant=frame.variant.where(~frame.variant.isin(fresh), "fresh agent"))


def _sections(summary: pd.DataFrame) -> str:
    """One markdown table per (suite, agent, game), each followed by what its paired tests establish."""
    text = ""
    for (suite, agent, game), rows in summary.groupby(["suite", "agent", "game"], sort=True):
        text += f"\n### {suite} / {agent} / {game}\n\n" + seeds.markdown(rows)
        said = seeds.established(rows)
        text += f"\n{said}" if said else ""
    return text


def beside_published(average: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Our average returns beside C-CHAIN's Table 1 (``analysis/data/cchain_table1.csv``), for the
    classic-control PPO runs of its protocol (``obs_offset``): one row per published cell of a game
    we ran, with each variant of ours that is the method (the fresh agent: reset, layers=0)."""
    protocol = set(runs[(runs.suite == "classic") & (runs.shift_kind == "obs_offset")].experiment)
    ours = average[(average.agent == "ppo") & average.experiment.isin(protocol)] if len(average) else average
    if ours.empty:
        return ""
    published = pd.read_csv(DATA / "cchain_table1.csv", comment="#")
    lines = [
        "| game | method | published: mean ± SE (seeds) | ours | ours: mean ± SE (seeds) |",
        "|---|---|---|---|---|",
    ]
    for row in published[published.game.isin(set(ours.game))].itertuples():
        same_game = ours[ours.game == row.game]
        matched = (
            same_game[same_game.fresh_agent]
            if row.ours == "fresh agent"
            else same_game[(same_game.intervention == row.ours) & ~same_game.fresh_agent]
        )
        theirs = f"{row.mean:.4g} ± {row.se:.4g} ({row.seeds})"
        for mine in matched.itertuples() if len(matched) else [None]:
            cells = [row.game, row.method, theirs]
            cells += (
                [f"`{mine.variant}`", f"{seeds.number(mine.mean)} ± {seeds.number(mine.se)} ({mine.seeds})"]
                if mine
                else [f"`{row.ours}`: not run", "–"]
            )
            lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n## Beside the published numbers (C-CHAIN, Tang et al. 2025, Table 1)\n\n"
        "Average return over the run, mean ± standard error over seeds; theirs from "
        "`plasticity_bench/analysis/data/cchain_table1.csv`.\n\n" + "\n".join(lines) + "\n"
    )


def summary_lines(average: pd.DataFrame) -> str:
    """One line per (suite, agent, game): each variant's average return over the run, mean ± SE
    (seeds): the README's summary of an experiment (``continual_summary.md``)."""
    lines = []
    for (suite, agent, game), rows in average.groupby(["suite", "agent", "game"], sort=True):
        rank = np.where(rows.fresh_agent, 0, np.where(rows.intervention == "none", 1, 2))
        rows = rows.assign(short=seeds.shortened(rows.variant), rank=rank)
        cells = [
            f"{'fresh agent' if r.fresh_agent else f'`{r.short}`'} "
            f"{seeds.number(r.mean)} ± {seeds.number(r.se)} ({r.seeds})"
            for r in rows.sort_values(["rank", "short"]).itertuples()
        ]
        what = "average return over the run, mean ± SE (seeds)"
        lines.append(f"- {suite} / {agent} / {game}, {what}: {', '.join(cells)}")
    return "\n".join(lines) + "\n"


def tables(runs, reps: int, seed: int, margin: float = FRESH_MARGIN) -> dict:
    """The continual runs' tables (frames keyed by their file name under tables/), their markdown
    (``continual.md``) and the notes on what could not be scored; {} without continual runs."""
    table = visits(runs.runs, runs.returns)
    if table.empty:
        return {}
    table, notes = against_fresh(table, runs.runs, random_scores(), margin)
    averages = run_averages(runs.runs, runs.returns)
    scores = vs_fresh_scores(table)
    vs_fresh = seeds.summarise(pd.concat([scores, across_games(scores, "vs_fresh")]), "vs_fresh", reps, seed)
    average = seeds.summarise(averages, "average_return", reps, seed)
    left_out = "".join(f"- {n.removeprefix('note: ')}\n" for n in notes if "left out for every variant" in n)
    text = (
        "## Average return over the whole run (C-CHAIN's statistic)\n\n"
        f"Per game: {SE_LABEL}, each seed's value, and an interval: an IQM with a 95% stratified bootstrap "
        f"CI where a cell has at least {seeds.MIN_SEEDS_FOR_CI} seeds, else the range of its seeds. "
        f"Differences are paired by seed (same tasks) against `none` and the fresh agent of the same "
        f"config ({seeds.TEST}).\n"
        + _sections(average)
        + "\n## Against a fresh agent: (R - R_random) / (R_fresh - R_random), tasks 1 on\n\n"
        "R: the mean return of the episodes that ended in the task's last quarter; R_fresh: the fresh "
        "agent's, averaged over its seeds; per seed, the mean over its scored tasks. A task counts when "
        f"R_fresh clears R_random by {margin:.0%} of |R_random|; `all games`: each seed's mean over "
        "its games.\n"
        + (_sections(vs_fresh) if len(vs_fresh) else "\n(no run has a fresh agent with the same config)\n")
        + (f"\nLeft out by that rule:\n\n{left_out}" if left_out else "")
        + beside_published(average, runs.runs)
    )
    return {
        "summary": summary_lines(average),
        "tables": {
            "continual.csv": table,
            "continual_runs.csv": averages,
            "continual_scores.csv": scores,
            "continual_vs_fresh.csv": vs_fresh,
            "continual_average_return.csv": average,
        },
        "markdown": text,
        "notes": notes,
    }


def _bars(summary: pd.DataFrame, fresh: set[str]) -> pd.DataFrame:
    """A summary as interval_bars wants it: the mean, whiskers one standard error either side."""
    se = summary.se.fillna(0)
    return fresh_named(
        summary.assign(value=summary["mean"], ci_low=summary["mean"] - se, ci_high=summary["mean"] + se),
        fresh,
    )


def figures(runs, out: Path, bins: int, reps: int, curve_reps: int, seed: int) -> dict:
    """``tables(runs, ...)`` and the figure files of the continual runs (under "files")."""
    result = tables(runs, reps, seed)
    if not result:
        return result
    vs_fresh, average = (
        result["tables"]["continual_vs_fresh.csv"],
        result["tables"]["continual_average_return.csv"],
    )
    result["files"] = []
    fresh = set(runs.runs[runs.runs.fresh_agent].variant)
    for (suite, agent), shifted in continual_runs(runs.runs).groupby(["suite", "agent"]):
        tag = f"{suite}_{agent}_continual"
        mine = runs.returns.merge(shifted[METHOD_RUN], on=METHOD_RUN)
        horizon, interval = int(shifted.total_steps.max()), int(shifted.shift_interval.min())
        grid = step_grid(mine, "episode_return", bins, [*stats.METHOD, "game", "seed"], horizon)
        curve = fresh_named(stats.iqm_curves(grid, "episode_return", curve_reps, seed, by=("game",)), fresh)
        figure = plots.curves(
            curve,
            "game",
            "IQM episode return (raw score)",
            f"{suite} / {agent}: continual runs, task switches every {interval:,} steps (dotted)",
            sharey=False,
        )
        for ax in figure.axes:
            for switch in range(interval, horizon, interval):
                ax.axvline(switch, color="grey", linestyle=":", linewidth=0.8)
        result["files"] += plots.save(figure, out, f"{tag}_returns")
        for name, summary, xlabel, what in (
            (
                "vs_fresh",
                vs_fresh,
                "score against a fresh agent (1 = as good, 0 = random)",
                "tasks 1 on against a fresh agent",
            ),
            ("average_return", average, "average return over the run", "average return over the whole run"),
        ):
            mine_summary = (
                summary[(summary.suite == suite) & (summary.agent == agent)] if len(summary) else summary
            )
            if len(mine_summary):
                seeds_note = f"{int(mine_summary.seeds.min())}-{int(mine_summary.seeds.max())} seeds per bar"
                figure = plots.interval_bars(
                    _bars(mine_summary, fresh),
                    "game",
                    xlabel,
                    f"{suite} / {agent}: {what}\n{SE_LABEL} ({seeds_note})",
                )
                result["files"] += plots.save(figure, out, f"{tag}_{name}")
    plt.close("all")
    return result
