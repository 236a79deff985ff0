"""``ours / reference``: the suite's runner against the minimal implementations in
bench/references (the same training, nothing else), run in turn, ours then the reference, for
a number of pairs at the same torch thread count. A ratio over 1 means the suite is faster than
the simplest code that trains the same agent; the spread of the pairs says how far to trust it.
A row with an intervention divides ours with it by the plain reference: what the intervention
costs is in the ratio."""
from __future__ import annotations

import statistics

import torch

from bench.references import dqn_atari, dqn_minatar, ppo
from bench.stretch import runner_stretch

# (suite, agent, interventions of ours, torch threads; 0 = all): MinAtar runs take one core each
# (an experiment runs one per core), Atari runs the whole machine
COMPARISONS = (("minatar", "dqn", ("none", "ln_l2"), 1), ("atari", "dqn", ("none",), 0),
               ("atari", "ppo", ("none",), 0), ("minatar", "ppo", ("none",), 1))


def reference_run(suite: str, agent: str, cfg, start: int, end: int):
    """The reference's run over the same stretch, with the sizes of ``cfg`` (tiny or not)."""
    a, game = cfg.agent, cfg.env.game
    if agent == "dqn" and suite == "minatar":
        return lambda: dqn_minatar.steps_per_second(end, start, game, learning_starts=a.learning_starts,
                                                    buffer_size=a.buffer_size, epsilon=a.epsilon_end)
    if agent == "dqn":
        return lambda: dqn_atari.steps_per_second(end, start, game, num_envs=cfg.env.num_envs,
                                                  learning_starts=a.learning_starts, buffer_size=a.buffer_size,
                                                  epsilon=a.epsilon_end)
    return lambda: ppo.steps_per_second(end, start, suite, game, num_envs=cfg.env.num_envs, num_steps=a.num_steps,
                                        minibatches=a.num_minibatches, epochs=a.update_epochs)


def compare(stretch_config, tiny: bool, scale: float, pairs: int, add) -> None:
    """One row per comparison and intervention: median of the pairs' ratios, min and max in the note."""
    every = torch.get_num_threads()
    try:
        for suite, agent, interventions, threads in COMPARISONS:
            threads = threads or every
            overrides, cfg, start, end = stretch_config(agent, suite, tiny, scale)
            reference = reference_run(suite, agent, cfg, start, end)
            ours: dict[str, list[float]] = {name: [] for name in interventions}
            theirs: list[float] = []
            for _ in range(pairs):
                for name in interventions:
                    ours[name].append(runner_stretch([*overrides, f"intervention={name}", f"threads={threads}"],
                                                     start, end)[0])
                torch.set_num_threads(threads)
                torch.set_flush_denormal(False)  # as in a fresh process: the runner set it for ours
                theirs.append(reference())
            for name, rates in ours.items():
                ratios = [mine / other for mine, other in zip(rates, theirs)]
                label = f"{suite} {agent}" + ("" if name == "none" else f" + {name} (reference: none)")
                add(f"{label}: ours / reference, {threads} thread(s)", statistics.median(ratios), "x",
                    f"min {min(ratios):.2f} max {max(ratios):.2f} of {pairs} pairs; agent steps/s ours "
                    f"{statistics.median(rates):,.0f}, reference {statistics.median(theirs):,.0f}")
    finally:
        torch.set_num_threads(every)
