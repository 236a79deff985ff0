"""Populations against separate processes: seed-steps/s (agent steps summed over the seeds) of
``population=K`` in one process, with each kernel, and of the same K seeds as K processes side
by side, over the same stretch of their runs after learning starts (read from the runs' own
timing.csv, past start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from plasticity_bench.runner.config import compose_config, run_path


def _command(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "plasticity_bench", "run", *overrides]


def _rate(directory: Path, start: int) -> float:
    """Agent steps/s of one run from its first timing row at or past ``start`` to its last."""
    timing = pd.read_csv(directory / "timing.csv")
    first, last = timing[timing["step"] >= start].iloc[0], timing.iloc[-1]
    return (last["step"] - first["step"]) / (last["wall_seconds"] - first["wall_seconds"])


def seed_steps_per_second(overrides: list[str], k: int, start: int, end: int, separate: bool) -> float:
    """Seed-steps/s of seeds 0..k-1 as one population, or as k processes at once."""
    with tempfile.TemporaryDirectory() as root:
        run = [
            *overrides,
            f"run_dir={root}",
            f"total_steps={end}",
            f"log.interval={start}",
            "log.progress=false",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if separate:
            processes = [
                subprocess.Popen(_command([*run, f"seed={s}"]), env=env, stdout=subprocess.DEVNULL)
                for s in range(k)
            ]
            codes = [p.wait() for p in processes]
        else:
            codes = [
                subprocess.run(
                    _command([*run, f"population={k}"]), env=env, stdout=subprocess.DEVNULL
                ).returncode
            ]
        if any(codes):
            raise RuntimeError(f"a benchmarked run failed: {' '.join(_command(run))}")
        return sum(_rate(run_path(compose_config([*run, f"seed={s}"])), start) for s in range(k))


def population_rows(sizes: list[int], device: str, stretch_config, tiny: bool, scale: float, add) -> None:
    """MinAtar DQN and PPO, with both kernels, at the stretch ``make bench`` times
    (``stretch_config``): populations of each size in ``sizes`` against that many separate
    processes (on a CPU; on a GPU against one run)."""
    for agent, kernels in (("dqn", ("loop", "stacked")), ("ppo", ("loop", "stacked"))):
        overrides, _, start, end = stretch_config(agent, "minatar", tiny, scale)
        overrides = [*overrides, f"device={device}", "threads=1"]
        one = seed_steps_per_second(overrides, 1, start, end, separate=True)
        add(f"minatar {agent} population: one run", one, "seed-steps/s", f"{device}, 1 thread")
        for k in (k for k in sizes if k > 1):  # (one seed: the row above)
            apart = (
                seed_steps_per_second(overrides, k, start, end, separate=True) if device == "cpu" else None
            )
            if apart is not None:
                add(
                    f"minatar {agent}: {k} separate processes",
                    apart,
                    "seed-steps/s",
                    f"{os.cpu_count()} cores",
                )
            for kernel in kernels:
                population = [*overrides, f"population_kernel={kernel}"]
                rate = seed_steps_per_second(population, k, start, end, separate=False)
                versus = f"{rate / apart:.2f}x the separate processes, " if apart else ""
                add(
                    f"minatar {agent} population of {k}: {kernel} kernel",
                    rate,
                    "seed-steps/s",
                    f"{versus}{rate / one:.1f}x one run",
                )
