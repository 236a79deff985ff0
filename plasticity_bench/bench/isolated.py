"""Timings taken outside a run: one update, or one probe, of an agent built as the runner builds
it (on the CPU, from the same config), timed alone as medians of repeats. ``make bench`` reads an
update's speed at 1 and at all torch threads, and its arithmetic rate, from here (bench/__main__.py)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from omegaconf import OmegaConf

from plasticity_bench import agents
from plasticity_bench.agents.base import EnvSpec
from plasticity_bench.bench.arithmetic import square_matmul, update_flops
from plasticity_bench.envs import make_env
from plasticity_bench.interventions import Composition
from plasticity_bench.probes import ProbeConfig, Prober
from plasticity_bench.runner.config import compose_config


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, lazy init)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_agent(cfg):
    """(env, first observation, agent) as the runner builds them, on the CPU."""
    env = make_env(cfg.env, 0)
    obs, _ = env.reset(seed=0)
    agent = agents.AGENTS[cfg.agent.name](
        OmegaConf.to_object(cfg.agent),
        EnvSpec.of(env, obs),
        Composition(cfg.intervention, cfg.interventions),
        torch.device("cpu"),
        0,
    )
    return env, obs, agent


def fill_replay(env, obs, agent, steps: int = 64) -> None:
    """Enough transitions to sample updates and probe inputs from."""
    rng = np.random.default_rng(0)
    for _ in range(steps):
        actions = rng.integers(env.num_actions, size=env.num_envs)
        nxt, reward, terminated, truncated, info = env.step(actions)
        agent.replay.add(obs, actions, reward, info["final_obs"], terminated, truncated)
        obs = nxt


def prepared_update(cfg, env, obs, agent, repeats: int):
    """(one update as a call, repeats to time it with): DQN samples a batch from a replay buffer
    filled here; PPO updates on a whole rollout, about 5x as long, so fewer repeats."""
    if cfg.agent.name == "dqn":
        fill_replay(env, obs, agent)
        return (lambda: agent.update(step=0)), repeats
    zeros = torch.zeros(cfg.agent.num_steps, env.num_envs)
    return (lambda: agent.learn(agent.prepare(zeros, zeros, 0), 0)), max(1, repeats // 5)


def interleaved_update_seconds(
    overrides: list[str], interventions: list[str], rounds: int, calls: int = 20
) -> dict[str, float]:
    """Seconds of one DQN update with each intervention, the updates taking turns in one process
    (median over ``rounds`` rounds of ``calls`` updates each): the machine's drift hits them alike."""
    updates = {}
    for name in interventions:
        cfg = compose_config([*overrides, f"intervention={name}"])
        env, obs, agent = make_agent(cfg)
        updates[name], _ = prepared_update(cfg, env, obs, agent, rounds)
        env.close()
        updates[name]()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in interventions}
    for _ in range(rounds):
        for name, update in updates.items():
            start = time.perf_counter()
            for _ in range(calls):
                update()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def update_timings(cfg, repeats: int) -> tuple[dict[int, float], int, float]:
    """(seconds of one update (DQN: batch; PPO: whole rollout) at 1 torch thread and at all, the
    update's floating-point operations, FLOP/s of a square matrix product at all threads)."""
    env, obs, agent = make_agent(cfg)
    update, repeats = prepared_update(cfg, env, obs, agent, repeats)
    env.close()
    every = torch.get_num_threads()
    seconds = {}
    matmul, matmul_flops = square_matmul()
    try:
        for threads in sorted({1, every}):
            torch.set_num_threads(threads)
            seconds[threads] = median_seconds(update, repeats)
        peak = matmul_flops / median_seconds(matmul, 9)  # (at all threads: the loop ends there)
    finally:
        torch.set_num_threads(every)
    return seconds, update_flops(agent, update), peak


def probe_overhead(cfg, rate: float) -> tuple[float, float]:
    """(seconds per probe, % of the wall time of one default probe interval at ``rate``)."""
    env, obs, agent = make_agent(cfg)
    fill_replay(env, obs, agent)
    env.close()
    prober = Prober(ProbeConfig(**cfg.probe), agent.network, 0)
    prober(agent)  # the first call also fits the fresh reference; later ones do not
    start = time.perf_counter()
    prober(agent)  # one: a probe is long enough to time alone (about 80 s on Atari)
    seconds = time.perf_counter() - start
    interval_seconds = cfg.probe.interval / rate
    return seconds, 100 * seconds / (interval_seconds + seconds)
