"""``ours / reference``: the suite's runner against the minimal implementations in
bench/references (the same training, nothing else), run in turn, ours then the reference, for
a number of pairs at the same torch thread count. A ratio over 1 means the suite is faster than
the simplest code that trains the same agent; the spread of the pairs says how far to trust it.
A row with an intervention compares with the reference that has the intervention written in
(MinAtar DQN + ln_l2: LayerNorm before each ReLU and an L2 term on the loss)."""

from __future__ import annotations

import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor

import torch

from plasticity_bench.bench.references import dqn_atari, dqn_minatar, ppo
from plasticity_bench.bench.stretch import runner_stretch
from plasticity_bench.runner.config import compose_config

# (suite, agent, intervention, torch threads; 0 = all): MinAtar runs take one core each (an
# experiment runs one per core), Atari runs the whole machine
COMPARISONS = (
    ("minatar", "dqn", "none", 1),
    ("minatar", "dqn", "ln_l2", 1),
    ("atari", "dqn", "none", 0),
    ("atari", "ppo", "none", 0),
    ("minatar", "ppo", "none", 1),
)


def reference_run(suite: str, agent: str, intervention: str, cfg, start: int, end: int):
    """The reference's run over the same stretch, with the sizes of ``cfg`` (tiny or not)."""
    a, game = cfg.agent, cfg.env.game
    if agent == "dqn" and suite == "minatar":
        ln_l2 = {"layer_norm": True, "l2": cfg.interventions.l2.coef} if intervention == "ln_l2" else {}
        return lambda: dqn_minatar.steps_per_second(
            end,
            start,
            game,
            learning_starts=a.learning_starts,
            buffer_size=a.buffer_size,
            epsilon=a.epsilon_end,
            **ln_l2,
        )
    if agent == "dqn":
        return lambda: dqn_atari.steps_per_second(
            end,
            start,
            game,
            num_envs=cfg.env.num_envs,
            learning_starts=a.learning_starts,
            buffer_size=a.buffer_size,
            epsilon=a.epsilon_end,
        )
    return lambda: ppo.steps_per_second(
        end,
        start,
        suite,
        game,
        num_envs=cfg.env.num_envs,
        num_steps=a.num_steps,
        minibatches=a.num_minibatches,
        epochs=a.update_epochs,
    )


def our_rate(overrides: list[str], start: int, end: int) -> float:
    """Agent steps/s of the suite's runner over the stretch (in the worker process of ours)."""
    return runner_stretch(overrides, start, end)[0]


def reference_rate(
    suite: str, agent: str, intervention: str, overrides: list[str], start: int, end: int, threads: int
) -> float:
    """Agent steps/s of the reference over the same stretch (in the references' worker process)."""
    torch.set_num_threads(threads)
    return reference_run(suite, agent, intervention, compose_config(overrides), start, end)()


def compare(
    stretch_config, tiny: bool, scale: float, pairs: int, add, headroom_at_peak: dict[str, float]
) -> None:
    """One row per comparison: median of the pairs' ratios, min and max in the note; where
    ``headroom_at_peak`` has how much faster our run would be with its update at the CPU's
    matrix-product peak (measured at the same thread count, all), the ratio that would give.
    (A factor from within one run: rates taken minutes apart drift by 10-20% on a shared VM.)
    Ours and the references each run in a worker process of their own (one each, kept for
    every pair of every comparison), apart from this one: the runner sets process-wide state
    (the allocator, subnormal flushing, compiled kernels) that a reference sharing its process
    would inherit, and a user's reference would not have."""
    every = torch.get_num_threads()
    spawn = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(1, mp_context=spawn) as ours_worker,
        ProcessPoolExecutor(1, mp_context=spawn) as references_worker,
    ):
        for suite, agent, intervention, threads in COMPARISONS:
            threads = threads or every
            overrides, _, start, end = stretch_config(agent, suite, tiny, scale)
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(pairs):
                ours.append(
                    ours_worker.submit(
                        our_rate,
                        [*overrides, f"intervention={intervention}", f"threads={threads}"],
                        start,
                        end,
                    ).result()
                )
                theirs.append(
                    references_worker.submit(
                        reference_rate, suite, agent, intervention, overrides, start, end, threads
                    ).result()
                )
            ratios = [mine / other for mine, other in zip(ours, theirs)]
            label = f"{suite} {agent}" + ("" if intervention == "none" else f" + {intervention}")
            headroom = headroom_at_peak.get(label) if threads == every else None
            ratio = statistics.median(ratios)
            ceiling = f"; {ratio * headroom:.2f}x with our update at the peak" if headroom else ""
            add(
                f"{label}: ours / reference, {threads} thread(s)",
                ratio,
                "x",
                f"min {min(ratios):.2f} max {max(ratios):.2f} of {pairs} pairs; agent steps/s ours "
                f"{statistics.median(ours):,.0f}, reference {statistics.median(theirs):,.0f}{ceiling}",
            )
