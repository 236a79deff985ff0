"""``python -m plasticity_bench.envs.random_scores``: the mean return of a uniformly random policy
on every MinAtar and classic game, written to ``analysis/data/random_scores.csv`` (the 0 of the continual
analysis's fresh-agent score, ``(R - R_random) / (R_fresh - R_random)``). Measured once, kept in
the repository; rerun it when a suite's settings change (MinAtar: sticky actions 0.1, no episode
cap; classic: episodes cut at 400 steps, as configs/preset/ppo_classic.yaml does)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from plasticity_bench.envs import make_env
from plasticity_bench.envs.classic import GAMES as CLASSIC_GAMES
from plasticity_bench.envs.classic import ClassicConfig
from plasticity_bench.envs.minatar import GAMES as MINATAR_GAMES
from plasticity_bench.envs.minatar import MinAtarConfig

OUT = Path(__file__).resolve().parents[1] / "analysis" / "data" / "random_scores.csv"
SETTINGS = {
    "minatar": "sticky actions 0.1; no episode cap; all 6 actions",
    "classic": "episodes cut at 400 steps (configs/preset/ppo_classic.yaml)",
}


def random_return(cfg, steps: int, seed: int = 0) -> tuple[float, int]:
    """(mean return of the episodes a random policy finishes in ``steps`` agent steps, their count)."""
    env, rng = make_env(cfg, seed), np.random.default_rng(seed)
    env.reset(seed=seed)
    total, finished = np.zeros(env.num_envs), []
    for _ in range(steps // env.num_envs):
        _, reward, terminated, truncated, _ = env.step(rng.integers(env.num_actions, size=env.num_envs))
        total += reward
        for i in np.flatnonzero(terminated | truncated):
            finished.append(total[i])
            total[i] = 0
    env.close()
    return float(np.mean(finished)), len(finished)


def main(steps: int = 200_000) -> int:
    configs = [MinAtarConfig(game=g, num_envs=8) for g in MINATAR_GAMES]
    configs += [ClassicConfig(game=g, num_envs=8, max_episode_steps=400) for g in CLASSIC_GAMES]
    lines = [
        f"# Uniformly random policy, mean return over the episodes finished in {steps:,} agent steps "
        "(8 envs, seed 0): python -m plasticity_bench.envs.random_scores",
        "suite,game,random,episodes,settings",
    ]
    for cfg in configs:
        mean, count = random_return(cfg, steps)
        lines.append(f"{cfg.suite},{cfg.game},{mean:.4f},{count},{SETTINGS[cfg.suite]}")
        print(lines[-1])
    OUT.write_text("\n".join(lines) + "\n")
    print(f"-> {OUT}")
    return 0


if __name__ == "__main__":
    if any(a in ("-h", "--help") for a in sys.argv[1:]) or not all(a.isdigit() for a in sys.argv[1:]):
        print(
            __doc__.strip().splitlines()[0] + "\nusage: python -m plasticity_bench.envs.random_scores [STEPS]"
        )
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
