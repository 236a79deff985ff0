"""Analysis on synthetic runs with known answers: IQM, normalisation, step grid, final scores,
the figure and table files, and one-line errors for bad folders and CSVs."""

import pandas as pd
import pytest
import yaml

from plasticity_bench.analysis import stats
from plasticity_bench.analysis.__main__ import main
from plasticity_bench.analysis.load import AnalysisError, load_runs
from plasticity_bench.analysis.scores import final_scores, normalise, step_grid
from plasticity_bench.core.schema import METRICS_COLUMNS, RETURNS_COLUMNS, legacy_columns
from plasticity_bench.runner.logger import CSVLog


def write_run(
    root, suite, game, intervention, seed, returns, metrics=(), total_steps=1000, done=True, variant=None
):
    """returns: [(step, episode_return)], metrics: [(step, metric, value)] -> a contract run dir."""
    variant = variant or intervention
    d = root / suite / game / "dqn" / variant / f"seed{seed}"
    d.mkdir(parents=True)
    identity = (suite, game, "dqn", intervention, variant, seed)
    log = CSVLog(d / "returns.csv", RETURNS_COLUMNS, identity, append=False)
    for step, value in returns:
        log.write(step, value, 10)
    log.close()
    log = CSVLog(d / "metrics.csv", METRICS_COLUMNS, identity, append=False)
    for step, metric, value in metrics:
        log.write(step, metric, "", value)
    log.close()
    (d / "config.yaml").write_text(yaml.safe_dump({"total_steps": total_steps, "seed": seed}))
    if done:
        (d / "done").touch()
    return d


def synthetic_runs(root):
    """2 MinAtar games x 3 seeds x {none, ln_l2}; ln_l2 scores higher, probe_loss lower."""
    for game in ("breakout", "space_invaders"):
        for seed in range(3):
            for intervention, level in (("none", 1.0), ("ln_l2", 3.0)):
                returns = [(step, level * step / 100 + seed) for step in range(50, 1001, 50)]
                metrics = [(step, "probe_loss", 0.5 / level + step / 1e4) for step in range(100, 1001, 100)]
                write_run(root, "minatar", game, intervention, seed, returns, metrics)
    return root


def test_iqm_of_a_known_score_matrix():
    # 8 scores with two outliers: IQM = mean of the middle half (3, 4, 5, 6) = 4.5, while the mean
    # is 87 / 8 and rliable's median (of the per-game means -7 and 28.75) is 10.875
    final = pd.DataFrame(
        {
            "suite": "minatar",
            "agent": "dqn",
            "intervention": "none",
            "variant": "none",
            "game": ["a"] * 4 + ["b"] * 4,
            "seed": [0, 1, 2, 3] * 2,
            "normalized_score": [-40.0, 3, 4, 5, 6, 7, 100, 2],
        }
    )
    table = stats.aggregate(final, reps=50).set_index("statistic")
    assert table.loc["iqm", "value"] == pytest.approx(4.5)
    assert table.loc["mean", "value"] == pytest.approx(87 / 8) and table.loc[
        "median", "value"
    ] == pytest.approx(10.875)
    assert table.loc["optimality_gap", "value"] == pytest.approx((41 + 0 + 0 + 0 + 0 + 0 + 0 + 0) / 8)
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()
    assert table.runs.iloc[0] == 4 and table.games.iloc[0] == 2


def test_methods_are_compared_on_the_games_and_seed_counts_they_share(tmp_path, capsys):
    rows = [("none", g, s, 1.0) for g in ("a", "b") for s in range(3)]
    rows += [("ln_l2", "a", s, 2.0) for s in range(2)] + [("ln_l2", "c", 0, 50.0)]
    final = pd.DataFrame(rows, columns=["intervention", "game", "seed", "normalized_score"]).assign(
        suite="minatar", agent="dqn", variant=lambda f: f.intervention
    )
    kept, notes = stats.comparable(final)
    assert set(kept.game) == {"a"} and sorted(kept.groupby("intervention").seed.nunique().tolist()) == [2, 2]
    assert notes == [
        "note: minatar/dqn compared on 1 shared game(s) (a); left out: ln_l2 also ran c; "
        "none also ran b; none on a cut from 3 to 2 seeds"
    ]
    aggregate = stats.aggregate(kept, reps=20).set_index(["intervention", "statistic"])
    assert aggregate.loc[("ln_l2", "mean"), "value"] == pytest.approx(2.0)  # game c's 50 is not averaged in
    root = tmp_path / "runs"
    for intervention, game, seeds in (
        ("none", "breakout", 2),
        ("none", "asterix", 1),
        ("ln_l2", "breakout", 1),
    ):
        for seed in range(seeds):
            write_run(
                root, "minatar", game, intervention, seed, [(step, 5.0) for step in range(100, 1001, 100)]
            )
    assert main([str(root), str(tmp_path / "out"), "--reps", "20", "--curve-reps", "10", "--bins", "4"]) == 0
    printed = capsys.readouterr().out
    assert (
        "note: minatar/dqn compared on 1 shared game(s) (breakout); left out: none also ran asterix; "
        "none on breakout cut from 2 to 1 seeds" in printed
    )
    aggregate = pd.read_csv(tmp_path / "out" / "tables" / "aggregate.csv")
    assert set(aggregate.games) == {1} and set(aggregate.runs) == {1}


def test_normalisation():
    atari = normalise("atari", pd.Series(["Breakout", "Pong"]), pd.Series([30.5, -20.7]))
    assert atari.tolist() == pytest.approx([1.0, 0.0])  # human Breakout 30.5, random Pong -20.7
    assert normalise("minatar", pd.Series(["breakout"]), pd.Series([5.0])).tolist() == [0.5]
    assert normalise("shifts", pd.Series(["label_reset"]), pd.Series([0.7])).tolist() == [0.7]
    with pytest.raises(AnalysisError, match="'Tetris' is not in the atari normalisation table"):
        normalise("atari", pd.Series(["Tetris"]), pd.Series([1.0]))


def test_step_grid_puts_different_logging_steps_on_one_grid():
    frame = pd.DataFrame(
        {
            "run": ["a"] * 4 + ["b"] * 2,
            "step": [10, 20, 60, 90, 45, 95],
            "value": [1.0, 3.0, 5.0, 7.0, 10.0, 20.0],
        }
    )
    grid = step_grid(frame, "value", bins=2, group=["run"], horizon=100)
    assert grid.step.tolist() == [25.0, 75.0, 25.0, 75.0]
    assert grid.value.tolist() == [2.0, 6.0, 10.0, 20.0]  # bin means: (1+3)/2, (5+7)/2, ...


def test_final_score_is_the_last_fraction_of_steps(tmp_path):
    write_run(tmp_path, "minatar", "breakout", "none", 0, [(100, 1.0), (900, 4.0), (950, 6.0)])
    write_run(tmp_path, "minatar", "breakout", "none", 1, [(100, 1.0), (400, 3.0), (500, 5.0)], done=False)
    final = final_scores(load_runs(tmp_path), fraction=0.1).set_index("seed")
    assert final.loc[0, "final_return"] == 6.0  # episodes after step 900 of its 1,000
    # in progress: after 450 of 500
    assert final.loc[1, "final_return"] == 5.0 and not final.loc[1, "complete"]
    assert final.loc[0, "normalized_score"] == pytest.approx(0.6)  # MinAtar breakout reference: 10


def test_figures_and_tables_from_a_folder_of_runs(tmp_path, capsys):
    synthetic_runs(tmp_path / "runs")
    assert (
        main(
            [
                str(tmp_path / "runs"),
                str(tmp_path / "out"),
                "--reps",
                "50",
                "--curve-reps",
                "20",
                "--bins",
                "5",
            ]
        )
        == 0
    )
    tables = tmp_path / "out" / "tables"
    final = pd.read_csv(tables / "final_scores.csv")
    assert list(final.columns[:8]) == [
        "suite",
        "game",
        "agent",
        "intervention",
        "variant",
        "seed",
        "final_return",
        "normalized_score",
    ]
    assert len(final) == 12
    aggregate = pd.read_csv(tables / "aggregate.csv")
    assert list(aggregate.columns[:8]) == [
        "suite",
        "agent",
        "intervention",
        "variant",
        "statistic",
        "value",
        "ci_low",
        "ci_high",
    ]
    iqm = aggregate[aggregate.statistic == "iqm"].set_index("intervention").value
    assert iqm["ln_l2"] > iqm["none"]
    improvement = pd.read_csv(tables / "probability_of_improvement.csv")
    assert improvement.value.iloc[0] > 0.5
    for name in (
        "learning_curves",
        "per_game",
        "final_scores",
        "performance_profile",
        "probability_of_improvement",
        "probes",
    ):
        for ext in ("png", "pdf"):
            path = tmp_path / "out" / f"minatar_dqn_{name}.{ext}"
            assert path.stat().st_size > 1000, path
    assert "ln_l2" in (tables / "aggregate.md").read_text()


def test_malformed_csv_names_file_and_line(tmp_path, capsys):
    d = write_run(tmp_path, "minatar", "breakout", "none", 0, [(100, 1.0), (200, 2.0)])
    lines = (d / "returns.csv").read_text().splitlines()
    lines[2] = lines[2].replace("2.0", "two")
    (d / "returns.csv").write_text("\n".join(lines) + "\n")
    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "returns.csv:3: episode_return is 'two'" in err


def test_empty_folder_and_broken_header(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no runs under" in capsys.readouterr().err
    d = write_run(tmp_path, "minatar", "breakout", "none", 0, [(100, 1.0)])
    (d / "metrics.csv").write_text("step,value\n1,2\n")
    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "metrics.csv:1: header is 'step,value'" in capsys.readouterr().err


def test_shifts_runs_get_per_task_figures_beside_rl_runs(tmp_path):
    synthetic_runs(tmp_path / "runs")
    for intervention, accuracy in (("none", 0.2), ("ln_l2", 0.9)):
        for seed in range(2):
            d = tmp_path / "runs" / "shifts" / "label_reset" / "mlp" / intervention / f"seed{seed}"
            d.mkdir(parents=True)
            # written as before runs had variants (no variant column): still read, variant = intervention
            log = CSVLog(
                d / "metrics.csv",
                legacy_columns(METRICS_COLUMNS),
                ("shifts", "label_reset", "mlp", intervention, seed),
                False,
            )
            for task in (1, 2, 3):
                for metric, value in (
                    ("task", task),
                    ("train_accuracy", accuracy),
                    ("probe_loss", 1 - accuracy),
                    ("dormant_frac@0.0", 0.1),
                ):
                    log.write(task * 400, metric, "", value)
                log.write(task * 400, "dormant_frac@0.0", "fc1", 0.5)  # per-layer rows stay out
            log.close()
    assert main([str(tmp_path / "runs"), str(tmp_path / "out"), "--reps", "50", "--curve-reps", "20"]) == 0
    table = pd.read_csv(tmp_path / "out" / "tables" / "shifts_per_task.csv")
    assert len(table) == 2 * 2 * 3 * 3 and set(table.task) == {1, 2, 3}
    assert table[table.metric == "train_accuracy"].groupby(
        "intervention"
    ).value.mean().to_dict() == pytest.approx({"none": 0.2, "ln_l2": 0.9})
    assert (tmp_path / "out" / "shifts_label_reset_mlp.png").exists()
    assert (tmp_path / "out" / "minatar_dqn_learning_curves.png").exists()  # the RL runs still get theirs
    final = pd.read_csv(tmp_path / "out" / "tables" / "final_scores.csv")
    assert set(final.suite) == {"minatar"}


def test_probability_of_improvement_takes_the_experiments_none_variant_as_its_baseline():
    from plasticity_bench.analysis.stats import probability_of_improvement

    rows = [
        {
            "suite": "minatar",
            "agent": "dqn",
            "intervention": i,
            "variant": f"{i}[env.shift.kind=x]",
            "game": g,
            "seed": s,
            "normalized_score": float(s + (i == "ln")),
        }
        for i in ("none", "ln")
        for g in ("a", "b")
        for s in range(3)
    ]
    better = probability_of_improvement(pd.DataFrame(rows), "none", reps=20)
    assert better.variant.tolist() == ["ln[env.shift.kind=x]"] and better.baseline.tolist() == [
        "none[env.shift.kind=x]"
    ]
    assert better.value.iloc[0] > 0.5


def test_figures_name_variants_by_intervention_and_draw_the_entk_condition_on_a_log_axis():
    from plasticity_bench.analysis import plots

    frame = pd.DataFrame(
        [
            {"variant": v, "metric": m, "step": s, "value": 10.0**s, "ci_low": 1.0, "ci_high": 2.0}
            for v in ("none[a=1]", "ln_l2[a=1,b=2]")
            for m in ("entk_condition", "probe_loss")
            for s in (1, 2)
        ]
    )
    figure = plots.curves(frame, "metric", "y", "t", sharey=False, log_panels=("entk_condition",))
    scales = {ax.get_title(): ax.get_yscale() for ax in figure.axes}
    assert scales == {"entk_condition": "log", "probe_loss": "linear"}
    assert sorted(t.get_text() for t in figure.legends[0].get_texts()) == ["ln_l2", "none"]
