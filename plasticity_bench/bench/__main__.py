"""``python -m plasticity_bench bench [--quick | --tiny] [--large] [--repeats N] [--pairs N]
[--references-only] [--out CSV]``: how fast and how big the suite is on this machine.

Prints one table and writes it as CSV (``--out``, default ``bench_results.csv`` in the working
directory) and as markdown beside it (``--table CSV`` writes that of a CSV already made; docs/speed.md
explains each row and holds the committed tables, ``make pages``):
- env ceilings: raw EnvPool Breakout (8 envs) and batched MinAtar steps/s, random actions;
- per agent and suite at the default config: the measured agent steps/s of the real runner after
  learning starts, the split of its wall time (env step, acting, replay sampling, update, other),
  the *bound* the first four imply (agent steps/s if the loop added nothing) and loop efficiency
  = measured / bound;
- the update at 1 torch thread and at all of them (why a single run keeps every core), its
  arithmetic against this CPU's matrix-product peak, and the agent steps/s an update at that
  peak would allow (bench/arithmetic.py);
- MinAtar DQN with ln, l2 and ln_l2: what each headline intervention costs in steps/s, and in
  update time with the four updates taking turns in one process;
- probe overhead at the default probe interval, replay bytes per stored Atari transition, peak RSS;
- ``ours / reference``: MinAtar DQN (none and ln_l2, 1 thread), Atari DQN, Atari PPO (all threads)
  and MinAtar PPO (1 thread) against the minimal implementations of bench/references, the same
  training run in turn, ours then the reference, ``--pairs`` times (bench/compare.py), with the
  ratio our update at that peak would give, where the thread counts match;
- populations, only when asked (``--population 2,4``, ``make bench POPULATION=2,4``: minutes per
  size): MinAtar DQN and PPO seeds as one ``population=K`` process, with each kernel, against K
  separate processes side by side, in seed-steps/s (bench/population.py; ``--device cuda`` on a
  GPU, ``--population-only`` for just these);
- ``--large``: a 1M-transition Atari replay buffer actually allocated and filled (about 7 GB).

``--tiny`` runs every row at toy sizes in about a minute: a check that the benchmark works (the
test suite runs it), not a measurement.

Each row is printed as it is measured, with the seconds it took, the seconds the same row took in
the newest committed table that has it (``results/bench/``: what to expect) and the running total;
the CSV keeps each row's seconds, so a page can say how long a table took from the table itself.

Agent steps/s and the split are measured inside one real run (``TimedRun``) over a stretch of
agent steps after learning starts, past the run's start-up. Isolated update timings are medians
of repeats (bench/isolated.py).
"""

from __future__ import annotations

import argparse
import csv
import platform
import re
import resource
import time
from pathlib import Path

import numpy as np
import torch

from plasticity_bench import agents
from plasticity_bench.agents.base import has_network
from plasticity_bench.agents.replay import ReplayBuffer
from plasticity_bench.bench.arithmetic import floor_seconds
from plasticity_bench.bench.compare import compare
from plasticity_bench.bench.isolated import interleaved_update_seconds, probe_overhead, update_timings
from plasticity_bench.bench.population import population_rows
from plasticity_bench.bench.stretch import runner_stretch
from plasticity_bench.core.memory import keep_freed_memory
from plasticity_bench.envs import make_env
from plasticity_bench.runner.config import compose_config

RESULTS = Path("bench_results.csv")
COMMITTED = Path(__file__).resolve().parents[2] / "results" / "bench"  # in a checkout; absent when installed


def timed_tables(committed: Path = COMMITTED) -> list[tuple[Path, dict[str, float]]]:
    """(path, each row's seconds) of every committed results CSV that timed its rows, oldest first
    by the date in its name (a clone gives every file the same mtime)."""
    tables = []
    for path in sorted(
        committed.glob("*.csv"), key=lambda p: re.findall(r"\d{4}-\d\d-\d\d(?:_\d{4})?", p.name)
    ):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "seconds" in rows[0]:
            tables.append((path, {row["what"]: float(row["seconds"]) for row in rows}))
    return tables


def clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def env_rate(cfg, steps: int) -> float:
    """Agent steps/s of the env alone, random actions."""
    env = make_env(cfg.env, 0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps // env.num_envs):
        env.step(rng.integers(env.num_actions, size=env.num_envs))
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def large_replay(transitions: int = 1_000_000, num_envs: int = 8) -> tuple[float, float, float]:
    """(GiB allocated, GiB of resident memory it took, seconds) for an Atari replay buffer of
    ``transitions`` slots filled through ``add`` with distinct frames, then sampled from."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    buffer = ReplayBuffer(transitions, num_envs, (4, 84, 84), np.uint8, 4, 0.99, 1)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(64, num_envs, 4, 84, 84), dtype=np.uint8)  # recycled
    zeros, false = np.zeros(num_envs), np.zeros(num_envs, dtype=bool)
    for t in range(buffer.slots):
        obs, nxt = frames[t % 64], frames[(t + 1) % 64]
        buffer.add(obs, rng.integers(4, size=num_envs), zeros, nxt, false, false)
    batch = buffer.sample(32, rng)
    assert batch["obs"].shape == (32, 4, 84, 84) and int(buffer.written.min()) >= buffer.slots
    seconds = time.perf_counter() - start
    rss_gib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 2**20
    return buffer.nbytes / 2**30, rss_gib, seconds


# Toy sizes for --tiny: every code path of the benchmark in about a minute (an agent without an
# entry here uses its quick_overrides).
TINY = {
    "dqn": [
        "agent.learning_starts=64",
        "agent.buffer_size=2000",
        "probe.steps=5",
        "probe.batch_size=32",
        "probe.entk_batch=8",
    ],
    "ppo": ["agent.num_steps=16", "agent.num_minibatches=2", "agent.update_epochs=1"],
}


# agent steps at which the measured stretch of a run starts and ends (DQN: learning starts at 1,000);
# an agent without an entry gets DEFAULT_LENGTHS
LENGTHS = {
    "dqn": {"atari": (2000, 4000), "minatar": (2000, 6000)},
    "ppo": {"atari": (1024, 5120), "minatar": (2048, 18432)},
}
DEFAULT_LENGTHS = {"atari": (2000, 4000), "minatar": (2000, 6000)}
TINY_LENGTHS = {"atari": (128, 256), "minatar": (128, 256)}


def benched_agents() -> list[str]:
    """Every registered agent with a network (the random agent has nothing to time)."""
    return sorted(name for name, cls in agents.AGENTS.items() if has_network(cls))


def stretch_config(agent: str, suite: str, tiny: bool, scale: float) -> tuple[list[str], object, int, int]:
    """(overrides, config, first and last agent step) of the measured stretch of one agent's run."""
    overrides = [f"env={suite}", f"agent={agent}"]
    if agent == "dqn":  # epsilon at its final value, so acting runs the network as it does
        overrides += ["agent.exploration_start=0", "agent.exploration_steps=1"]  # for most of a run
    if tiny:
        overrides += TINY.get(agent, list(agents.AGENTS[agent].quick_overrides))
    elif agent == "dqn":  # learning from the start of the measured stretch, small buffer
        overrides += ["agent.learning_starts=1000", "agent.buffer_size=20000"]
    cfg = compose_config(overrides)
    start, end = TINY_LENGTHS[suite] if tiny else LENGTHS.get(agent, DEFAULT_LENGTHS)[suite]
    end = start + max(int((end - start) * (1 if tiny else scale)), 1)
    if "num_steps" in cfg.agent:  # whole rollouts: the stretch starts just after an update and ends on one
        rollout = cfg.agent.num_steps * cfg.env.num_envs
        start, end = max(rollout, start // rollout * rollout), max(2 * rollout, end // rollout * rollout)
    return overrides, cfg, start, end


def bench_agent(
    agent: str, suite: str, args, repeats: int, scale: float, add
) -> tuple[list[str], int, int, float, float | None]:
    """The rows of one agent on one suite; returns (overrides, start, end of the stretch, measured
    steps/s, steps/s with the update at the matmul peak or None where the update is not timed)."""
    overrides, cfg, start, end = stretch_config(agent, suite, args.tiny, scale)
    measured, parts = runner_stretch(overrides, start, end)
    bound = 1 / (sum(parts.values()) - parts["other"])  # agent steps/s if the loop itself took no time
    tag = f"{suite} {agent}"
    for part, seconds in parts.items():
        add(f"{tag}: {part}", 1e3 * seconds, "ms/agent step", f"{100 * seconds * measured:.0f}% of wall time")
    add(f"{tag}: bound from the components", bound, "agent steps/s", "env + act + sampling + update only")
    add(f"{tag}: measured (runner, learning)", measured, "agent steps/s")
    add(f"{tag}: loop efficiency", 100 * measured / bound, "%", "measured / bound = 1 - other's share")
    # one update timed alone needs to know how to prepare its batch or rollout: DQN's and PPO's
    by_threads, flops, peak = update_timings(cfg, repeats) if agent in ("dqn", "ppo") else ({}, 0, 0.0)
    for n, seconds in by_threads.items():
        note = f"{by_threads[1] / seconds:.2f}x the 1-thread speed" if n > 1 else ""
        add(f"{tag}: one update at {n} torch thread(s)", 1e3 * seconds, "ms", note)
    bound_at_peak = None
    if flops:  # how near the update runs to the CPU's peak, and the agent steps/s that caps
        every = max(by_threads)
        share = flops / by_threads[every] / peak
        add(
            f"{tag}: update arithmetic",
            flops / 1e9,
            "GFLOP",
            f"{flops / by_threads[every] / 1e9:.0f} GFLOP/s at "
            f"{every} thread(s), {100 * share:.0f}% of a 1024^3 matmul's {peak / 1e9:.0f}",
        )
        bound_at_peak = 1 / floor_seconds(sum(parts.values()), parts["update"], share)
        add(
            f"{tag}: bound with the update at that peak",
            bound_at_peak,
            "agent steps/s",
            "every other part as measured",
        )
    if agent == "dqn":
        seconds, share = probe_overhead(cfg, measured)
        add(
            f"{tag}: probe at the default interval ({cfg.probe.interval:,})",
            share,
            "% of wall time",
            f"{seconds:.1f} s per probe",
        )
    return overrides, start, end, measured, bound_at_peak


def suite_rows(args, repeats: int, scale: float, add) -> dict[str, float]:
    """Env ceilings, each agent's split of wall time, update and probe costs, what the headline
    interventions cost; returns for each "suite agent" how much faster its run would be with the
    update at the matmul peak (bench/arithmetic.py)."""
    for suite in ("atari", "minatar"):
        cfg = compose_config([f"env={suite}", "agent=random"])
        add(
            f"{suite}: env alone, {cfg.env.num_envs} env(s), random actions",
            env_rate(cfg, int(20000 * scale)),
            "agent steps/s",
        )
    measured_rates = {
        f"{suite} {agent}": bench_agent(agent, suite, args, repeats, scale, add)
        for agent in benched_agents()
        for suite in ("atari", "minatar")
    }
    # what the headline interventions cost: the same MinAtar DQN stretch with each, and (robust
    # to the machine's drift between those runs) their updates taking turns
    overrides, start, end, base, _ = measured_rates["minatar dqn"]
    headline = ("ln", "l2", "ln_l2")
    for intervention in headline:
        rate, _ = runner_stretch([*overrides, f"intervention={intervention}"], start, end)
        add(
            f"minatar dqn + {intervention}: measured (runner, learning)",
            rate,
            "agent steps/s",
            f"{rate / base:.2f}x none",
        )
    updates = interleaved_update_seconds(overrides, ["none", *headline], rounds=repeats)
    for intervention in headline:
        add(
            f"minatar dqn + {intervention}: one update, interleaved with none",
            1e3 * updates[intervention],
            "ms",
            f"{updates[intervention] / updates['none']:.2f}x none's {1e3 * updates['none']:.2f} ms",
        )
    return {tag: at_peak / measured for tag, (*_, measured, at_peak) in measured_rates.items() if at_peak}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m plasticity_bench bench", description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke check, noisier)")
    size.add_argument(
        "--tiny", action="store_true", help="toy sizes: checks that the benchmark runs (for tests)"
    )
    p.add_argument(
        "--large",
        action="store_true",
        help="also allocate and fill a 1M-transition Atari replay buffer (7 GB)",
    )
    p.add_argument("--repeats", type=int, default=20, help="repeats per isolated update timing (median)")
    p.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="ours / reference pairs per comparison (default 1, a spot check that keeps make bench "
        "near 7 minutes on 2 cores; 5 for a median: over 3 it moved by 2-4%% between runs, and each "
        "pair adds about 3 minutes)",
    )
    p.add_argument("--references-only", action="store_true", help="only the ours / reference rows")
    p.add_argument(
        "--population",
        default="",
        help="population sizes to time against as many separate processes, e.g. 2,4 (off by default: "
        "about 6 minutes per size on 2 cores)",
    )
    p.add_argument("--population-only", action="store_true", help="only the population rows")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device of the population rows")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"results CSV (default {RESULTS})")
    p.add_argument("--table", type=Path, help="only write this results CSV's markdown table beside it")
    args = p.parse_args(argv)
    if args.table:
        args.table.with_suffix(".md").write_text(markdown(args.table))
        return 0
    repeats = 2 if args.tiny else 3 if args.quick else args.repeats
    scale = 0.01 if args.tiny else 0.1 if args.quick else 1.0
    rows = []
    tables = timed_tables()
    expected = {what: seconds for _, table in tables for what, seconds in table.items()}  # newest wins
    began = last = time.perf_counter()

    def add(what: str, value: float, unit: str, note: str = "") -> None:
        nonlocal last
        now = time.perf_counter()
        seconds, last = now - last, now
        rows.append(
            {"what": what, "value": round(value, 4), "unit": unit, "note": note, "seconds": round(seconds, 1)}
        )
        usual = f"(usually {expected[what]:.0f})" if what in expected else ""
        timing = f"{clock(now - began):>5} +{seconds:3.0f} s {usual:14s}"  # running total, this row, usual
        print(f"{timing} {what:52s} {value:>12,.2f} {unit:14s} {note}", flush=True)

    keep_freed_memory()  # as the runner does: the isolated timings below are then a run's
    threads = torch.get_num_threads()
    print(
        f"{platform.node()}: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{threads} torch threads"
    )
    full = [(path, table) for path, table in tables if path.name.startswith("make_bench_")]
    if full and not args.tiny:
        path, table = full[-1]
        print(f"{path.name}, the newest committed table, took {clock(sum(table.values()))} (minutes:seconds)")
    print()
    sizes = [int(k) for k in args.population.split(",") if k.strip()]
    if args.population_only:
        population_rows(sizes, args.device, stretch_config, args.tiny, scale, add)
        return write_rows(rows, args.out, threads)
    headroom_at_peak = {} if args.references_only else suite_rows(args, repeats, scale, add)
    # the yardsticks: the same training in minimal code (bench/references), A B A B
    compare(stretch_config, args.tiny, scale, 1 if args.tiny else args.pairs, add, headroom_at_peak)
    if args.references_only:
        return write_rows(rows, args.out, threads)
    buffer = ReplayBuffer(10000, 8, (4, 84, 84), np.uint8, 4, 0.99, 1)
    add("atari replay: bytes per slot", buffer.nbytes / 10000, "bytes", "a stored transition adds one frame")
    if args.large:
        allocated, resident, seconds = large_replay()
        add(
            "atari replay, 1M transitions: allocated",
            allocated,
            "GiB",
            f"filled through add() in {seconds:.0f} s",
        )
        add("atari replay, 1M transitions: peak RSS growth", resident, "GiB")
    if sizes:
        population_rows(sizes, args.device, stretch_config, args.tiny, scale, add)
    add("peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")
    return write_rows(rows, args.out, threads)


def markdown(results: Path) -> str:
    """A results CSV as a markdown table (values rounded): what docs/speed.md holds of it, put
    there by ``make pages`` from the ``.md`` written beside the CSV."""
    with open(results, newline="") as f:
        rows = list(csv.DictReader(f))
    timed = bool(rows) and "seconds" in rows[0]  # tables from before rows were timed have no column
    lines = ["| what | value | unit | note |" + " seconds |" * timed, "|---|---:|---|---|" + "---:|" * timed]
    for row in rows:
        cells = [row["what"], value_text(float(row["value"])), row["unit"], row["note"]]
        if timed:
            cells.append(f"{float(row['seconds']):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if timed:  # the table's own wall time, so that no page types it
        lines += ["", f"Measured in {clock(sum(float(row['seconds']) for row in rows))} (minutes:seconds)."]
    return "\n".join(lines) + "\n"


def value_text(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def write_rows(rows: list[dict], out: Path, threads: int) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["what", "value", "unit", "note", "seconds", "machine", "torch", "threads"]
        )
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {**row, "machine": platform.node(), "torch": torch.__version__, "threads": threads}
            )
    out.with_suffix(".md").write_text(markdown(out))
    print(f"\n-> {out} (and its table: {out.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
