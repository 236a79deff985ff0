"""make bench in its tiny mode: every row is produced, finite and in its unit; the large-mode
replay fill on a small buffer."""
import csv
import math

import numpy as np

from bench.__main__ import benched_agents, large_replay, main


def test_tiny_bench_writes_every_row(tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert main(["--tiny", "--out", str(out)]) == 0
    rows = {row["what"]: row for row in csv.DictReader(open(out))}
    for suite in ("atari", "minatar"):
        assert float(rows[f"{suite}: env alone, {8 if suite == 'atari' else 1} env(s), random actions"]["value"]) > 0
        for agent in benched_agents():
            tag = f"{suite} {agent}"
            for what in ("env", "act", "update", "bound from the components", "measured (runner, learning)",
                         "loop efficiency", "one update at 1 torch thread(s)"):
                value = float(rows[f"{tag}: {what}"]["value"])
                assert math.isfinite(value) and value > 0, (tag, what, value)
            assert math.isfinite(float(rows[f"{tag}: other"]["value"]))  # the loop's own share, timed in the runner
        assert f"{suite} dqn: probe at the default interval" in " ".join(rows)
    for intervention in ("ln", "l2", "ln_l2"):
        assert float(rows[f"minatar dqn + {intervention}: measured (runner, learning)"]["value"]) > 0
        assert float(rows[f"minatar dqn + {intervention}: one update, interleaved with none"]["value"]) > 0
    for label, threads in (("minatar dqn", 1), ("minatar dqn + ln_l2", 1), ("atari dqn", 0), ("atari ppo", 0),
                           ("minatar ppo", 1)):  # the yardsticks of bench/references ran beside ours
        (what,) = [w for w in rows if w.startswith(f"{label}: ours / reference, {threads or ''}")]
        assert math.isfinite(float(rows[what]["value"])) and float(rows[what]["value"]) > 0
        assert "of 1 pairs" in rows[what]["note"] and "reference" in rows[what]["note"]
    assert float(rows["atari replay: bytes per slot"]["value"]) < 7200
    assert {"machine", "torch", "threads"} <= set(next(iter(rows.values())))
    printed = capsys.readouterr().out
    assert "atari dqn: bound from the components" in printed and "done:" not in printed


def test_large_replay_fill_allocates_frames_once():
    allocated_gib, _, _ = large_replay(transitions=4000, num_envs=8)
    assert np.isclose(allocated_gib * 2**30 / 4000, 84 * 84 + 7, atol=1)  # one frame + action, reward, flags
