"""make bench in its tiny mode: every row is produced, finite and in its unit; the large-mode
replay fill on a small buffer; the arithmetic count behind the peak rows."""

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from plasticity_bench.bench.__main__ import benched_agents, large_replay, main, markdown, timed_tables
from plasticity_bench.bench.arithmetic import floor_seconds, update_flops
from plasticity_bench.nets.optim import CenteredRMSprop


def test_tiny_bench_writes_every_row(tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert main(["--tiny", "--out", str(out)]) == 0  # (populations, only when asked: below)
    rows = {row["what"]: row for row in csv.DictReader(open(out))}
    for suite in ("atari", "minatar"):
        assert (
            float(rows[f"{suite}: env alone, {8 if suite == 'atari' else 1} env(s), random actions"]["value"])
            > 0
        )
        for agent in benched_agents():
            tag = f"{suite} {agent}"
            for what in (
                "env",
                "act",
                "update",
                "bound from the components",
                "measured (runner, learning)",
                "loop efficiency",
                "one update at 1 torch thread(s)",
            ):
                value = float(rows[f"{tag}: {what}"]["value"])
                assert math.isfinite(value) and value > 0, (tag, what, value)
            # the loop's own share, timed in the runner
            assert math.isfinite(float(rows[f"{tag}: other"]["value"]))
            assert (
                float(rows[f"{tag}: update arithmetic"]["value"]) > 0
                and "GFLOP/s" in rows[f"{tag}: update arithmetic"]["note"]
            )
            at_peak = float(rows[f"{tag}: bound with the update at that peak"]["value"])
            assert at_peak >= 0.99 * float(rows[f"{tag}: measured (runner, learning)"]["value"])
        assert f"{suite} dqn: probe at the default interval" in " ".join(rows)
    for intervention in ("ln", "l2", "ln_l2"):
        assert float(rows[f"minatar dqn + {intervention}: measured (runner, learning)"]["value"]) > 0
        assert float(rows[f"minatar dqn + {intervention}: one update, interleaved with none"]["value"]) > 0
    for label, threads in (
        ("minatar dqn", 1),
        ("minatar dqn + ln_l2", 1),
        ("atari dqn", 0),
        ("atari ppo", 0),
        ("minatar ppo", 1),
    ):  # the yardsticks of bench/references ran beside ours
        (what,) = [w for w in rows if w.startswith(f"{label}: ours / reference, {threads or ''}")]
        assert math.isfinite(float(rows[what]["value"])) and float(rows[what]["value"]) > 0
        assert "of 1 pairs" in rows[what]["note"] and "reference" in rows[what]["note"]
        if threads == 0:  # all threads, as the bound was measured: the ratio's ceiling is given
            assert "x with our update at the peak" in rows[what]["note"]
    assert float(rows["atari replay: bytes per slot"]["value"]) < 7200
    assert {"machine", "torch", "threads"} <= set(next(iter(rows.values())))
    printed = capsys.readouterr().out
    assert "atari dqn: bound from the components" in printed and "done:" not in printed
    assert not any("population" in what for what in rows)  # minutes per size: behind --population
    assert all(float(row["seconds"]) >= 0 for row in rows.values())
    assert "Measured in " in out.with_suffix(".md").read_text()


def test_expected_seconds_come_from_the_newest_timed_table_and_a_table_states_its_wall_time(tmp_path):
    header = "what,value,unit,note,seconds,machine,torch,threads\n"
    (tmp_path / "make_bench_2026-11-27_0812.csv").write_text("what,value,unit,note\na,1,x,\n")  # untimed
    (tmp_path / "make_bench_2026-12-08.csv").write_text(header + "a,1,x,,40.2,m,t,2\nb,2,x,,25,m,t,2\n")
    (tmp_path / "make_bench_2026-12-01.csv").write_text(header + "a,1,x,,10,m,t,2\n")
    tables = timed_tables(tmp_path)
    assert [path.name for path, _ in tables] == ["make_bench_2026-12-01.csv", "make_bench_2026-12-08.csv"]
    assert tables[-1][1] == {"a": 40.2, "b": 25.0}
    text = markdown(tmp_path / "make_bench_2026-12-08.csv")
    assert "| a | 1 | x |  | 40 |" in text and text.endswith("Measured in 1:05 (minutes:seconds).\n")
    assert "Measured" not in markdown(tmp_path / "make_bench_2026-11-27_0812.csv")


@pytest.mark.slow  # (a minute of subprocesses)
def test_tiny_bench_times_populations_against_separate_processes(tmp_path):
    out = tmp_path / "results.csv"
    assert main(["--tiny", "--population-only", "--population", "2", "--out", str(out)]) == 0
    rows = {row["what"]: float(row["value"]) for row in csv.DictReader(open(out))}
    for agent in ("dqn", "ppo"):
        names = [f"minatar {agent} population: one run", f"minatar {agent}: 2 separate processes"]
        names += [f"minatar {agent} population of 2: {kernel} kernel" for kernel in ("loop", "stacked")]
        assert all(math.isfinite(rows[n]) and rows[n] > 0 for n in names), rows
    assert len(rows) == 8


def test_large_replay_fill_allocates_frames_once():
    allocated_gib, _, _ = large_replay(transitions=4000, num_envs=8)
    assert np.isclose(allocated_gib * 2**30 / 4000, 84 * 84 + 7, atol=1)  # one frame + action, reward, flags


def test_update_flops_counts_forward_and_backward_and_leaves_the_optimizer_alone():
    """A linear layer of 32 x 16 inputs to 8 outputs: 2 x 32 x 16 x 8 FLOPs forward, twice that
    backward (input and weight gradients); the agent's optimizer is back and its step untaken."""

    class Agent:
        def __init__(self):
            self.network = nn.Linear(16, 8, bias=False)
            self.optimizer = CenteredRMSprop(self.network.parameters(), lr=0.1)
            self.x = torch.randn(32, 16, requires_grad=True)

        def update(self):
            self.optimizer.zero_grad()
            for group in self.optimizer.param_groups:  # as PPO anneals its learning rate
                group["lr"] = 0.5
            self.network(self.x).pow(2).sum().backward()
            self.optimizer.step()

    agent = Agent()
    optimizer, before = agent.optimizer, agent.network.weight.detach().clone()
    assert update_flops(agent, agent.update) == 3 * 2 * 32 * 16 * 8
    assert agent.optimizer is optimizer and not optimizer.state  # swapped back, never stepped
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert torch.equal(agent.network.weight, before)
    assert math.isclose(floor_seconds(1.0, 0.8, 0.5), 0.6)
    assert floor_seconds(1.0, 0.8, 1.2) == 1.0  # an update already at the peak has nothing left to give
