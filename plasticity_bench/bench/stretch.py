"""One stretch of a real run, timed where its parts run: what ``make bench`` measures the suite's
runner with (agent steps/s after learning starts, and the split of its wall time)."""

from __future__ import annotations

import collections
import contextlib
import io
import tempfile
import time

import torch

from plasticity_bench.runner.config import compose_config
from plasticity_bench.runner.loop import Run


class TimedRun(Run):
    """The real runner with its parts timed where they run: env steps, acting, updates, replay
    sampling, over the stretch of agent steps from ``measure_from`` to the end. The split of wall
    time, the bound it implies and the loop's own share ("other") then come from the same seconds
    of one run, past its start-up: isolated timings taken minutes apart, or the difference of two
    runs, moved by up to 30% on a shared 2-core VM."""

    def __init__(self, cfg, measure_from: int):
        super().__init__(cfg)
        self.measure_from = measure_from
        self.seconds: collections.Counter = collections.Counter()
        self.marks: list[tuple[int, float, collections.Counter]] = []  # (step, time, seconds) at both ends

    def build(self, resuming: bool) -> None:
        super().build(resuming)
        self.env.step = self._timed("env", self.env.step)
        if hasattr(self.agent, "update"):  # the agents call self.update(): the instance attribute wins
            self.agent.update = self._timed("update", self.agent.update)
        if hasattr(self.agent, "replay"):
            self.agent.replay.sample = self._timed("replay_sample", self.agent.replay.sample)
        act = self._timed("act", self.agent.act)

        def act_after_mark(obs, step):  # acting opens every loop iteration
            if not self.marks and step >= self.measure_from:
                self._mark()
            return act(obs, step)

        self.agent.act = act_after_mark

    def _finish(self) -> None:
        self._mark()
        super()._finish()

    def _mark(self) -> None:
        self.marks.append((self.step, time.perf_counter(), collections.Counter(self.seconds)))

    def _timed(self, part: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start

        return timed


def runner_stretch(overrides: list[str], start: int, end: int) -> tuple[float, dict[str, float]]:
    """(agent steps/s, seconds per agent step of each part) of the real runner between agent
    steps ``start`` and ``end`` of one run. Parts: env, act, replay_sample, update (without its
    sampling) and other (the loop itself: bookkeeping, storing transitions, logging). Torch's thread
    count is restored afterwards (the run sets its own: a MinAtar run one thread)."""
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        run = TimedRun(
            compose_config(
                [
                    *overrides,
                    f"total_steps={end}",
                    f"run_dir={tmp}",
                    "log.progress=false",
                    "probe.interval=0",
                    "checkpoint.interval=0",
                ]
            ),
            measure_from=start,
        )
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the runner's "done: ..." line
                run.train()
        finally:
            torch.set_num_threads(threads)
    (first_step, first_time, first_seconds), (last_step, last_time, last_seconds) = run.marks
    steps, wall = last_step - first_step, last_time - first_time
    parts = {
        part: (last_seconds[part] - first_seconds[part]) / steps
        for part in ("env", "act", "replay_sample", "update")
        if part in last_seconds
    }
    if "replay_sample" in parts:  # DQN samples inside its update
        parts["update"] -= parts["replay_sample"]
    parts["other"] = wall / steps - sum(parts.values())
    return steps / wall, parts
