"""Continual RL runs (``env.shift``), measured as the literature measures plasticity loss: each
task against a *fresh agent* trained on the same task for the same budget (C-CHAIN, Tang et al.
2025; TRAC, Muppidi et al. 2024; Juliani & Ash 2024), not against the run's own first visit,
which rewards transfer and so hides a loss.

The fresh agent is the run of the same experiment and seed whose intervention is ``reset`` with
``layers=0`` and ``at_shift=true``: at every switch it re-initialises every parameter and its
optimizer (interventions/reset.py), so each task is learned from scratch, on the very tasks
(offsets, game order, env seeds) the other runs see. Until the first switch both runs are the
same run, so task 0 is left out of the scores.

Per run and task (``tables/continual.csv``): ``final_return``, the mean return of the episodes
that ended in the task's last quarter; ``fresh_return``, the fresh agent's over the same window;
``vs_fresh = (final - random) / (fresh - random)`` with the random policy's score of the task's
game (``analysis/data/random_scores.csv``): 1 = as good as learning the task from scratch, below
1 = plasticity lost. ``transfer_ratio`` (final / the first visit of the same game) is kept as a
transfer view only. Per run (``tables/continual_runs.csv``): the average return over the whole
run, C-CHAIN's statistic. A task or run that cannot be scored is said in one line, never dropped
silently.

Task t covers agent steps (t x interval, (t + 1) x interval]; an episode belongs to the task in
which it ended (an episode cut by a switch ends there).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from plasticity_bench.analysis import plots, stats
from plasticity_bench.analysis.scores import DATA, step_grid

METHOD_RUN = ["suite", "game", "agent", "intervention", "variant", "seed"]
# what a run and its fresh agent share: the same task sequence, budget, seed and training keys
EXPERIMENT = [
    "suite",
    "game",
    "agent",
    "seed",
    "shift_kind",
    "shift_interval",
    "shift_games",
    "shift_settings",
    "total_steps",
    "training_keys",
]
CI_LABEL = "IQM, 95% CIs: stratified bootstrap over seeds, resampled within each game"


def random_scores() -> pd.DataFrame:
    """(suite, game) -> the uniformly random policy's mean return (envs/random_scores.py)."""
    return pd.read_csv(DATA / "random_scores.csv", comment="#").set_index(["suite", "game"])["random"]


def continual_runs(runs: pd.DataFrame) -> pd.DataFrame:
    shifting = runs[(runs.shift_kind != "none") & (runs.shift_interval > 0)]
    return shifting.assign(training_keys=shifting.variant.map(training_keys))


def training_keys(variant: str) -> str:
    """The agent and env keys of a variant label (``none[agent.lr=0.001,env.shift.kind=x]`` ->
    ``agent.lr=0.001,env.shift.kind=x``): what the run changed apart from its intervention's keys,
    which a fresh agent of the same experiment shares."""
    inner = variant.partition("[")[2].rstrip("]")
    return ",".join(k for k in inner.split(",") if k.startswith(("agent.", "env.")))


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
    table: pd.DataFrame, runs: pd.DataFrame, random: pd.Series
) -> tuple[pd.DataFrame, list[str]]:
    """``table`` (from ``visits``) with ``fresh_return``, ``random_return`` and ``vs_fresh``; and one
    line for every run or task that cannot be scored, saying why."""
    notes = []
    keyed = table.merge(continual_runs(runs)[METHOD_RUN + EXPERIMENT[4:] + ["fresh_agent"]], on=METHOD_RUN)
    fresh = keyed[keyed.fresh_agent][[*EXPERIMENT, "task", "final_return"]].rename(
        columns={"final_return": "fresh_return"}
    )
    if fresh.duplicated([*EXPERIMENT, "task"]).any():
        notes.append("note: more than one fresh-agent run of one experiment and seed; the first is used")
        fresh = fresh.drop_duplicates([*EXPERIMENT, "task"])
    out = keyed.merge(fresh, on=[*EXPERIMENT, "task"], how="left")
    out["random_return"] = [random.get((s, g), np.nan) for s, g in zip(out.suite, out.task_game)]
    span = out.fresh_return - out.random_return
    out["vs_fresh"] = (out.final_return - out.random_return) / span.where(span > 0)
    for (suite, agent, variant, game, seed), rows in out.groupby(
        ["suite", "agent", "variant", "game", "seed"]
    ):
        where = f"{suite}/{game}/{agent}/{variant}/seed{seed}"
        if rows.fresh_return.isna().all():
            notes.append(
                f"note: {where}: no fresh-agent run of the same experiment and seed (intervention=reset "
                "interventions.reset.layers=0 interventions.reset.at_shift=true); not scored against one"
            )
            continue
        for row in rows[rows.vs_fresh.isna()].itertuples():
            why = (
                "no random score for this game in analysis/data/random_scores.csv"
                if np.isnan(row.random_return)
                else "the fresh agent has not finished this task"
                if np.isnan(row.fresh_return)
                else "no episode ended in the window"
                if np.isnan(row.final_return)
                else f"the fresh agent scored {row.fresh_return:.3g}, "
                f"not above random ({row.random_return:.3g})"
            )
            notes.append(f"note: {where} task {row.task} ({row.task_game}): not scored: {why}")
    return out.drop(columns=["fresh_agent", *EXPERIMENT[4:]]), notes


def _seed_notes(scores: pd.DataFrame) -> list[str]:
    """One line per (suite, agent) whose variants ran different numbers of seeds."""
    notes = []
    for (suite, agent), rows in scores.groupby(["suite", "agent"]):
        counts = rows.groupby("variant").seed.nunique()
        if counts.nunique() > 1:
            notes.append(
                f"note: {suite}/{agent}: variants ran different numbers of seeds "
                f"({', '.join(f'{v} {n}' for v, n in counts.items())}); each is aggregated over its own"
            )
    return notes


def vs_fresh_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and task game, the mean ``vs_fresh`` over the tasks after the first (the score
    ``stats.aggregate`` takes: games = task games)."""
    scored = table[table.task > 0].dropna(subset=["vs_fresh"])
    score = scored.groupby(["suite", "agent", "intervention", "variant", "seed", "task_game"]).vs_fresh.mean()
    return score.reset_index().rename(columns={"task_game": "game", "vs_fresh": "normalized_score"})


def run_averages(runs: pd.DataFrame, returns: pd.DataFrame) -> pd.DataFrame:
    """One row per finished continual run: its average return over the whole run, as C-CHAIN logs
    it: the mean return of the episodes that ended in each rollout (``agent.num_steps`` x
    ``env.num_envs`` steps), averaged over the rollouts; per episode for an agent without rollouts."""
    shifting = continual_runs(runs)
    shifting = shifting[shifting.complete]
    mine = returns.merge(shifting[METHOD_RUN + ["rollout"]], on=METHOD_RUN)
    window = np.where(mine.rollout > 0, (mine.step - 1) // mine.rollout.clip(lower=1), np.arange(len(mine)))
    per_window = mine.assign(window=window).groupby([*METHOD_RUN, "window"]).episode_return.mean()
    table = per_window.groupby(METHOD_RUN).agg(average_return="mean").reset_index()
    table = table.merge(mine.groupby(METHOD_RUN).size().rename("episodes").reset_index(), on=METHOD_RUN)
    cycles = shifting[shifting.shift_kind == "game_cycle"].set_index(METHOD_RUN).shift_games
    labels = [
        f"cycle of {cycles[key].count(',') + 1} games" if key in cycles.index else game
        for key, game in zip(table[METHOD_RUN].itertuples(index=False, name=None), table.game)
    ]
    return table.assign(game=labels)  # a game_cycle run played every game of its cycle, not env.game


def per_game(frame: pd.DataFrame, value: str, reps: int, seed: int) -> pd.DataFrame:
    """``stats.aggregate`` of ``value`` game by game (a column of seeds per game)."""
    parts = [
        stats.aggregate(rows.assign(normalized_score=rows[value]), reps, seed).assign(game=game)
        for game, rows in frame.groupby("game")
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def markdown(aggregate: pd.DataFrame, by: list[str]) -> str:
    """IQM [95% CI] per variant (and ``by``), as a markdown table."""
    iqm = aggregate[aggregate.statistic == "iqm"]
    lines = [
        "| " + " | ".join([*by, "intervention", "variant", "seeds", "IQM [95% CI]"]) + " |",
        "|" + "---|" * (len(by) + 4),
    ]
    for row in iqm.sort_values([*by, "variant"]).itertuples():
        cells = [str(getattr(row, b)) for b in by]
        lines.append(
            "| "
            + " | ".join(
                [
                    *cells,
                    row.intervention,
                    f"`{row.variant}`",
                    str(row.runs),
                    f"{row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def fresh_named(frame: pd.DataFrame, fresh: set[str]) -> pd.DataFrame:
    """The fresh runs' variants named "fresh agent" on a figure (plots.short_labels names the rest)."""
    return frame.assign(variant=frame.variant.where(~frame.variant.isin(fresh), "fresh agent"))


def _few_seeds(frame: pd.DataFrame) -> str:
    fewest = int(frame.runs.min()) if len(frame) else 0
    return f"\nonly {fewest} seed(s) in some cell: CIs from so few seeds are rough" if fewest < 3 else ""


def tables(runs, reps: int, seed: int) -> dict:
    """The continual runs' tables (frames keyed by their file name under tables/), their markdown
    (``continual.md``) and the notes on what could not be scored; {} without continual runs."""
    table = visits(runs.runs, runs.returns)
    if table.empty:
        return {}
    table, notes = against_fresh(table, runs.runs, random_scores())
    averages = run_averages(runs.runs, runs.returns)
    scores = vs_fresh_scores(table)  # each variant on all its seeds (the seeds column says how many)
    vs_fresh = stats.aggregate(scores, reps, seed) if len(scores) else stats.aggregate_columns()
    cut = _seed_notes(scores)
    average = per_game(averages, "average_return", reps, seed)
    text = (
        "## Against a fresh agent: mean of (R - R_random) / (R_fresh - R_random) over tasks 1 on\n\n"
        + (markdown(vs_fresh, ["suite", "agent"]) if len(vs_fresh) else "(no run has a fresh agent)\n")
        + "\n## Average return over the whole run (C-CHAIN's statistic), per game\n\n"
        + markdown(average, ["suite", "agent", "game"])
        + f"\n{CI_LABEL}.\n"
    )
    return {
        "tables": {
            "continual.csv": table,
            "continual_runs.csv": averages,
            "continual_vs_fresh.csv": vs_fresh,
            "continual_average_return.csv": average,
        },
        "markdown": text,
        "notes": notes + cut,
    }


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
        mine_fresh = (
            vs_fresh[(vs_fresh.suite == suite) & (vs_fresh.agent == agent)] if len(vs_fresh) else vs_fresh
        )
        if len(mine_fresh):
            iqm = fresh_named(mine_fresh[mine_fresh.statistic == "iqm"], fresh).assign(
                panel="IQM over seeds and games"
            )
            result["files"] += plots.save(
                plots.interval_bars(
                    iqm,
                    "panel",
                    "score against a fresh agent (1 = as good, 0 = random)",
                    f"{suite} / {agent}: tasks 1 on against a fresh agent on each\n"
                    f"{CI_LABEL}{_few_seeds(iqm)}",
                ),
                out,
                f"{tag}_vs_fresh",
            )
        mine_average = fresh_named(
            average[(average.suite == suite) & (average.agent == agent) & (average.statistic == "iqm")], fresh
        )
        result["files"] += plots.save(
            plots.interval_bars(
                mine_average,
                "game",
                "average return over the run",
                f"{suite} / {agent}: average return over the whole run\n{CI_LABEL}{_few_seeds(mine_average)}",
            ),
            out,
            f"{tag}_average_return",
        )
    plt.close("all")
    return result
