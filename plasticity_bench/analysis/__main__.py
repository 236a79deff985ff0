"""``python -m plasticity_bench figures RUNS OUT``: every figure and table from the CSVs under RUNS.

Tables (contract): OUT/tables/final_scores.csv, OUT/tables/aggregate.csv (+ aggregate.md,
probability_of_improvement.csv); continual runs (env.shift): OUT/tables/continual*.csv and
continual.md (analysis/continual.py), and they are left out of the stationary tables. Figures (PNG +
PDF): OUT/<suite>_<agent>_*.{png,pdf}; shifts runs: OUT/shifts_<task>_<network>.{png,pdf},
OUT/tables/shifts_per_task.csv and shifts.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from plasticity_bench.analysis import plots, shifts, stats
from plasticity_bench.analysis.continual import figures as continual_figures
from plasticity_bench.analysis.load import AnalysisError, Runs, load_runs
from plasticity_bench.analysis.scores import NORMALISATION, final_scores, step_grid, with_normalised
from plasticity_bench.core.schema import IDENTITY

FINAL_COLUMNS = [
    "suite",
    "game",
    "agent",
    "intervention",
    "variant",
    "seed",
    "final_return",
    "normalized_score",
]
PROBE_METRICS = [
    "probe_loss",
    "dormant_frac@0.1",
    "zombie_frac",
    "feature_srank",
    "param_norm",
    "dist_from_init",
    "entk_condition",
    "grad_cosine",
    "grad_norm",
    "loss",
    "q_mean",
]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m plasticity_bench figures", description=__doc__.splitlines()[0]
    )
    p.add_argument("runs", help="folder of run directories (searched recursively)")
    p.add_argument("out", help="folder for the figures, with the tables in OUT/tables/")
    p.add_argument(
        "--final-fraction",
        type=float,
        default=0.1,
        help="final score = episodes in this last fraction of steps",
    )
    p.add_argument("--reps", type=int, default=2000, help="bootstrap repetitions for final-score statistics")
    p.add_argument("--curve-reps", type=int, default=500, help="bootstrap repetitions per curve point")
    p.add_argument("--bins", type=int, default=40, help="points of the common step grid of the curves")
    p.add_argument("--seed", type=int, default=0, help="seed of every bootstrap")
    args = p.parse_args(argv)
    if not 0 < args.final_fraction <= 1 or args.reps < 1 or args.curve_reps < 1 or args.bins < 1:
        p.error("need 0 < --final-fraction <= 1 and positive --reps, --curve-reps, --bins")
    return args


def markdown(aggregate: pd.DataFrame) -> str:
    """Final score statistics per variant, 'value [ci_low, ci_high]'."""
    cell = aggregate.assign(
        text=[
            f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
            for v, lo, hi in zip(aggregate.value, aggregate.ci_low, aggregate.ci_high)
        ]
    )
    table = cell.pivot_table(
        index=["suite", "agent", "intervention", "variant", "runs", "games"],
        columns="statistic",
        values="text",
        aggfunc="first",
    )[list(stats.STATISTICS)].reset_index()
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        runs = load_runs(args.runs)
    except AnalysisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out, tables = Path(args.out), Path(args.out) / "tables"
    try:
        tables.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot write to {out} ({error.strerror}); pass another OUT", file=sys.stderr)
        return 2
    print(f"{len(runs.runs)} runs under {args.runs}; writing to {out}", flush=True)
    written = []
    if (runs.runs.suite == "shifts").any():
        table, written = shifts.figures(runs.metrics, out, args.reps, args.seed)
        table.to_csv(tables / "shifts_per_task.csv", index=False)
        (tables / "shifts.md").write_text(shifts.markdown(table))
        print(
            f"{int((runs.runs.suite == 'shifts').sum())} shifts runs -> "
            f"{tables / 'shifts_per_task.csv'}, shifts.md"
        )
        runs = Runs(*(frame[frame.suite != "shifts"] for frame in (runs.runs, runs.returns, runs.metrics)))
        if runs.runs.empty:
            print(f"{len(written)} figure files in {out}")
            return 0
    if (runs.runs.shift_kind != "none").any():
        print("continual runs: scoring each task against its fresh agent, drawing their figures", flush=True)
    continual = continual_figures(runs, out, args.bins, args.reps, args.curve_reps, args.seed)
    if continual:
        for name, frame in continual["tables"].items():
            frame.to_csv(tables / name, index=False)
        (tables / "continual.md").write_text(continual["markdown"])
        (tables / "continual_summary.md").write_text(continual["summary"])
        for line in continual["notes"]:
            print(line)
        written += continual["files"]
        print(
            f"{int((runs.runs.shift_kind != 'none').sum())} continual runs -> {tables / 'continual.csv'}, "
            "continual_vs_fresh.csv, continual_runs.csv, continual_average_return.csv, continual.md"
        )
    shifting = runs.runs.shift_kind != "none"
    # a continual run is not scored as a stationary one: its game is not the game it played
    if shifting.any():
        stationary = runs.runs[~shifting]
        runs = Runs(
            stationary,
            *(
                frame.merge(stationary[list(IDENTITY)], on=list(IDENTITY))
                for frame in (runs.returns, runs.metrics)
            ),
        )
        if runs.runs.empty:
            if continual:
                print(continual["markdown"])
            print(f"{len(written)} figure files in {out}")
            return 0
    running = int((~runs.runs.complete).sum())
    note = (
        f"final = mean return of episodes in the last {args.final_fraction:.0%} of steps; "
        "95% stratified bootstrap CIs"
    )
    if running:
        note += f"; {running} of {len(runs.runs)} runs still in progress"
    try:
        final = final_scores(runs, args.final_fraction)
    except AnalysisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    final[FINAL_COLUMNS + ["episodes", "complete"]].to_csv(tables / "final_scores.csv", index=False)
    final, notes = stats.comparable(final)  # every method on the same games and seed counts
    for line in notes:
        print(line)
    aggregate = stats.aggregate(final, args.reps, args.seed)
    aggregate.to_csv(tables / "aggregate.csv", index=False)
    (tables / "aggregate.md").write_text(markdown(aggregate))
    improvement = stats.probability_of_improvement(final, "none", args.reps, args.seed)
    improvement.to_csv(tables / "probability_of_improvement.csv", index=False)

    for (suite, agent), final_rows in final.groupby(["suite", "agent"]):
        tag, unit = f"{suite}_{agent}", NORMALISATION.get(suite, "raw score")
        print(f"{suite} / {agent}: learning curves, final scores, profiles, probes", flush=True)
        shared = set(final_rows.game)
        mine = runs.returns[
            (runs.returns.suite == suite) & (runs.returns.agent == agent) & runs.returns.game.isin(shared)
        ]
        horizon = int(runs.runs[(runs.runs.suite == suite) & (runs.runs.agent == agent)].total_steps.max())
        grid = step_grid(
            with_normalised(mine, "episode_return"),
            "normalized_score",
            args.bins,
            [*stats.METHOD, "game", "seed"],
            horizon,
        )
        curve = stats.iqm_curves(grid, "normalized_score", args.curve_reps, args.seed).assign(
            panel=f"{suite} / {agent}"
        )
        written += plots.save(
            plots.curves(curve, "panel", "IQM normalised score", f"{unit}\n{note}"),
            out,
            f"{tag}_learning_curves",
        )
        raw = step_grid(mine, "episode_return", args.bins, [*stats.METHOD, "game", "seed"], horizon)
        per_game = stats.iqm_curves(raw, "episode_return", args.curve_reps, args.seed, by=("game",))
        written += plots.save(
            plots.curves(
                per_game,
                "game",
                "IQM episode return (raw score)",
                f"{suite} / {agent}: per game, IQM over seeds",
                sharey=False,
            ),
            out,
            f"{tag}_per_game",
        )
        agg_rows = aggregate[(aggregate.suite == suite) & (aggregate.agent == agent)]
        written += plots.save(
            plots.interval_bars(
                agg_rows, "statistic", "normalised score", f"{suite} / {agent}: final scores ({unit})\n{note}"
            ),
            out,
            f"{tag}_final_scores",
        )
        taus = np.linspace(
            min(0.0, final_rows.normalized_score.min()), max(1.0, final_rows.normalized_score.max()), 41
        )
        profile = stats.performance_profiles(final_rows, taus, args.reps, args.seed)
        written += plots.save(
            plots.profiles(profile, f"{suite} / {agent}: performance profile"),
            out,
            f"{tag}_performance_profile",
        )
        better = improvement[(improvement.suite == suite) & (improvement.agent == agent)].assign(
            panel="P(X > none)"
        )
        if len(better):
            written += plots.save(
                plots.interval_bars(
                    better, "panel", "probability of improvement", f"{suite} / {agent}: variant X vs none"
                ),
                out,
                f"{tag}_probability_of_improvement",
            )
        probes = runs.metrics[
            (runs.metrics.suite == suite)
            & (runs.metrics.agent == agent)
            & runs.metrics.game.isin(shared)
            & (runs.metrics.layer.fillna("") == "")
            & runs.metrics.metric.isin(PROBE_METRICS)
        ]
        if len(probes):
            probe_grid = step_grid(
                probes, "value", args.bins, [*stats.METHOD, "metric", "game", "seed"], horizon
            )
            probe_curves = stats.iqm_curves(probe_grid, "value", args.curve_reps, args.seed, by=("metric",))
            written += plots.save(
                plots.curves(
                    probe_curves,
                    "metric",
                    "IQM over games and seeds",
                    f"{suite} / {agent}: probes and diagnostics",
                    sharey=False,
                    log_panels=("entk_condition",),
                ),
                out,
                f"{tag}_probes",
            )
    print(
        f"{len(runs.runs)} runs ({running} in progress) -> {tables} and {len(written)} figure files in {out}"
    )
    shown = aggregate[aggregate.statistic == "iqm"][
        ["suite", "agent", "variant", "value", "ci_low", "ci_high", "runs", "games"]
    ]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
