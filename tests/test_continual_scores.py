"""Scoring continual runs against a fresh agent (analysis/continual.py) and summarising a handful of
seeds (analysis/seeds.py): pairing from each run's config.yaml, the pooled fresh denominator, the
one rule that leaves a task out, paired differences, and intervals named for what they are."""

import numpy as np
import pandas as pd
import pytest
import yaml

from plasticity_bench.analysis.continual import against_fresh, tables, visits, vs_fresh_scores
from plasticity_bench.analysis.load import load_runs
from plasticity_bench.analysis.seeds import MIN_SEEDS_FOR_CI, summarise

RANDOM = pd.Series({("classic", "CartPole"): 20.0})


def write_run(root, intervention, seed, late, lr=0.001, variant=None):
    """A finished continual run of 3 tasks of 100 steps: config.yaml as the runner writes it and one
    episode late in each task with the return ``late[task]``."""
    variant = variant or intervention
    config = {
        "seed": seed,
        "total_steps": 300,
        "run_dir": str(root),
        "intervention": intervention,
        "variant": variant,
        "env": {"suite": "classic", "game": "CartPole", "shift": {"kind": "obs_offset", "interval": 100}},
        "agent": {"name": "ppo", "lr": lr, "num_steps": 0},
        "interventions": {"reset": {"layers": 0, "at_shift": True}},
    }
    path = root / f"{intervention}-{variant}-{lr}" / f"seed{seed}"
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "done").touch()
    rows = ["suite,game,agent,intervention,variant,seed,step,episode_return,episode_length"]
    rows += [
        f'classic,CartPole,ppo,{intervention},"{variant}",{seed},{100 * t + 90},{r},1'
        for t, r in enumerate(late)
    ]
    (path / "returns.csv").write_text("\n".join(rows) + "\n")


def scored(root):
    runs = load_runs(root)
    return against_fresh(visits(runs.runs, runs.returns), runs.runs, RANDOM)


def test_a_run_pairs_with_the_fresh_agent_of_its_own_config_whatever_its_label(tmp_path):
    # two configs whose labels keep the same keys (as a long label cut to its first keys and a hash
    # does): each must be scored against the fresh agent trained with its own learning rate
    for lr, fresh_late in ((0.001, [50.0, 80.0, 60.0]), (0.1, [50.0, 40.0, 30.0])):
        label = f"none[agent.lr=0.0,#{'a' if lr == 0.001 else 'b'}]"
        write_run(tmp_path, "none", 0, [50.0, 30.0, 30.0], lr=lr, variant=label)
        write_run(tmp_path, "reset", 0, fresh_late, lr=lr, variant=f"reset[agent.lr=0.0,#{lr}]")
    table, notes = scored(tmp_path)
    none = table[table.intervention == "none"]
    assert none.groupby("variant").fresh_return.apply(list).to_dict() == {
        "none[agent.lr=0.0,#a]": [50.0, 80.0, 60.0],
        "none[agent.lr=0.0,#b]": [50.0, 40.0, 30.0],
    }
    assert not any("more than one" in n or "no fresh-agent" in n for n in notes)


def test_a_run_without_a_fresh_agent_of_its_config_is_said_and_not_scored(tmp_path):
    write_run(tmp_path, "none", 0, [50.0, 30.0, 30.0], lr=0.001)
    write_run(tmp_path, "reset", 0, [50.0, 80.0, 60.0], lr=0.1)
    table, notes = scored(tmp_path)
    assert table[table.intervention == "none"].vs_fresh.isna().all()
    assert any("classic/CartPole/ppo: no fresh-agent run with the same config for none" in n for n in notes)


def test_one_collapsed_fresh_seed_does_not_remove_a_task_for_the_others(tmp_path):
    fresh = {
        0: [50.0, 80.0, 80.0],
        1: [50.0, 80.0, 20.0],
        2: [50.0, 80.0, 80.0],
    }  # seed 1 collapses in task 2
    for seed, late in fresh.items():
        write_run(tmp_path, "reset", seed, late)
        write_run(tmp_path, "ln_l2", seed, [50.0, 80.0, 71.0])
    table, notes = scored(tmp_path)
    ln = table[(table.intervention == "ln_l2") & (table.task == 2)].set_index("seed")
    assert ln.fresh_return.tolist() == [60.0] * 3  # the fresh agents' mean over seeds
    assert np.allclose(ln.vs_fresh, (71 - 20) / (60 - 20)) and ln.scored.all()  # kept for every seed
    assert np.isnan(ln.vs_fresh_own_seed[1]) and ln.vs_fresh_own_seed[0] == pytest.approx(51 / 60)
    assert not any("left out" in n for n in notes)


def test_a_task_the_fresh_agents_do_not_learn_is_left_out_for_every_variant_and_said(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "reset", seed, [50.0, 80.0, 22.0])  # task 2: 22 does not clear 20 by 25% of 20
        write_run(tmp_path, "none", seed, [50.0, 30.0, 90.0])
    table, notes = scored(tmp_path)
    assert not table[table.task == 2].scored.any() and table[table.task == 1].scored.all()
    assert [n for n in notes if "left out" in n] == [
        "note: classic/CartPole/ppo task 2 (CartPole): left out for every variant: the fresh agent's mean "
        "over 2 seed(s), 22, does not clear random (20) by 25% of |random|"
    ]
    scores = vs_fresh_scores(table).set_index(["variant", "seed"])
    assert scores.loc[("none", 0), "vs_fresh"] == pytest.approx(10 / 60) and scores.tasks.eq(1).all()


def test_summaries_pair_seeds_and_call_an_interval_from_few_seeds_a_range():
    rows = []
    for seed in range(3):
        rows += [
            {"intervention": "none", "fresh_agent": False, "seed": seed, "v": [1.0, 2.0, 4.0][seed]},
            {"intervention": "reset", "fresh_agent": True, "seed": seed, "v": [9.0, 9.5, 10.0][seed]},
            {"intervention": "ln", "fresh_agent": False, "seed": seed, "v": [3.0, 5.0, 6.0][seed]},
        ]
    frame = pd.DataFrame(rows).assign(suite="s", agent="a", game="g", experiment="e")
    frame["variant"] = frame.intervention
    summary = summarise(frame, "v", reps=50, seed=0).set_index("variant")
    ln = summary.loc["ln"]
    assert ln["mean"] == pytest.approx(14 / 3) and ln.se == pytest.approx(
        np.std([3, 5, 6], ddof=1) / np.sqrt(3)
    )
    assert (ln.interval, ln.low, ln.high) == ("range", 3.0, 6.0)
    assert ln.minus_none == pytest.approx(7 / 3) and ln.minus_none_pairs == 3  # differences 2, 3, 2
    from scipy.stats import ttest_rel

    assert ln.minus_none_p == pytest.approx(ttest_rel([3, 5, 6], [1, 2, 4]).pvalue)
    many = pd.concat([frame.assign(seed=frame.seed + 3 * k) for k in range(2)])  # 6 seeds: an IQM and its CI
    wide = summarise(many, "v", reps=50, seed=0).set_index("variant").loc["ln"]
    assert (
        MIN_SEEDS_FOR_CI <= wide.seeds
        and wide.interval == "IQM 95% CI"
        and wide.low <= wide.center <= wide.high
    )


def test_the_tables_say_which_differences_hold(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "reset", seed, [50.0, 80.0 + seed, 80.0])
        write_run(tmp_path, "none", seed, [50.0, 25.0 + seed, 21.0 + 2 * seed])
    text = tables(load_runs(tmp_path), reps=50, seed=0)["markdown"]
    assert "range [" in text and "CI" not in text.split("| variant")[1].split("\n\n")[0]
    assert "`none` below the fresh agent" in text


def test_our_average_returns_stand_beside_the_published_table(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "reset", seed, [50.0, 80.0, 80.0])
        write_run(tmp_path, "none", seed, [50.0, 25.0, 21.0])
    text = tables(load_runs(tmp_path), reps=50, seed=0)["markdown"].split("## Beside the published")[1]
    assert "| CartPole | Vanilla | 61.77 ± 6.927 (6) | `none` | " in text
    assert "| CartPole | Oracle | 299.9 ± 5.986 (6) | `reset` | " in text
    assert "| CartPole | TRAC | 217.4 ± 26.31 (6) | `trac`: not run | – |" in text
    assert "Acrobot" not in text  # only the games we ran
