"""``population=K``: seeds ``seed .. seed+K-1`` of one config trained in one process, in lockstep.

Each member is an ordinary ``runner.loop.Run`` writing the run directory its separate run would
(same path, CSVs, checkpoints, ``done`` marker, config.yaml), so a population resumes as a
population or seed by seed, and a finished member is skipped. The population steps its members
in turn under one progress bar (seed-steps/s: agent steps summed over the seeds) and one signal
handler; a seed that fails (a non-finite metric) stops as its separate run would, and the others
go on. What members would share in one process is kept per member: torch's global RNG (the
surgeries re-initialise weights from it).

How members learn is ``population_kernel``: ``loop``, each member's own update (the floats of its
separate run, byte for byte); ``stacked``, the updates of all members as one stacked model
(``runner.stacked``: one batched forward and backward and one optimizer step for the K seeds,
which is where a GPU pays); ``auto``, stacked on a GPU and loop on a CPU, where stacking gains
nothing.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import sys
import time

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from plasticity_bench import agents
from plasticity_bench.agents.base import EnvSpec
from plasticity_bench.envs import make_env
from plasticity_bench.interventions import Composition
from plasticity_bench.runner.compose import ConfigError
from plasticity_bench.runner.loop import Run, pick_device, progress_bar
from plasticity_bench.runner.stacked import StackedLearning, stackable
from plasticity_bench.runner.store import RunError


def member_configs(cfg: DictConfig) -> list[DictConfig]:
    """The configs of the K separate runs: seed + k, population 1 (their config.yaml is the one
    a separate run saves)."""
    members = []
    for k in range(cfg.population):
        member = copy.deepcopy(cfg)
        member.seed, member.population, member.population_kernel = cfg.seed + k, 1, "auto"
        members.append(member)
    return members


def kernel_of(cfg: DictConfig) -> str:
    """The kernel a population of this config learns with (``auto`` resolved)."""
    if cfg.population_kernel != "auto":
        return cfg.population_kernel
    on_gpu = pick_device(cfg.device).type == "cuda"
    stacks = stackable(agents.AGENTS[cfg.agent.name])
    stacks = stacks and not Composition(cfg.intervention, cfg.interventions).unstackable()
    return "stacked" if on_gpu and stacks else "loop"


# ---- memory: estimated before anything is created -----------------------------------------
def footprint(agent) -> tuple[int, int]:
    """(host bytes, device bytes) one agent will hold once its buffers fill: the arrays and
    tensors it and its parts (replay, rollout) hold, plus gradients, two optimizer moments and a
    probe's copy of the network (4 x its parameters). The replay's arrays are allocated lazily,
    so their size is what they will take, not what they take now."""
    host = device = 0
    seen: set[int] = set()
    for holder in (agent, *[v for v in vars(agent).values() if hasattr(v, "__dict__")]):
        for value in vars(holder).values():
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, np.ndarray):
                host += value.nbytes
            elif isinstance(value, torch.Tensor):
                device += value.numel() * value.element_size()
            elif isinstance(value, torch.nn.Module):
                device += sum(t.numel() * t.element_size() for t in value.state_dict().values())
    network = getattr(agent, "network", None)
    if network is not None:
        device += 4 * sum(p.numel() * p.element_size() for p in network.parameters())
    return host, device


def available_memory(device: torch.device) -> tuple[int, int | None]:
    """(host bytes available, device bytes free or None for the CPU)."""
    host = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
    except OSError:
        pass
    if host is None:
        host = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return host, torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None


def check_memory(cfg: DictConfig, k: int) -> None:
    """Refuse a population of ``k`` seeds that will not fit, with the estimate (one line; nothing
    created)."""
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    env = make_env(cfg.env, cfg.seed)
    try:
        obs, _ = env.reset(seed=cfg.seed)
        agent = agents.AGENTS[cfg.agent.name](
            OmegaConf.to_object(cfg.agent),
            EnvSpec.of(env, obs),
            Composition(cfg.intervention, cfg.interventions),
            torch.device("cpu"),
            cfg.seed,
        )
    finally:
        env.close()
    host, tensors = footprint(agent)
    if device.type == "cpu":
        host, tensors = host + tensors, 0
    free_host, free_device = available_memory(device)
    gib = 2**30
    if k * host > free_host:
        raise ConfigError(
            f"population={k} needs about {k * host / gib:.1f} GiB of memory ({host / gib:.2f} GiB per seed: "
            f"replay and networks) and {free_host / gib:.1f} GiB is available; use population<="
            f"{max(free_host // max(host, 1), 1)} or a smaller agent.buffer_size"
        )
    if free_device is not None and k * tensors > free_device:
        raise ConfigError(
            f"population={k} needs about {k * tensors / gib:.1f} GiB of GPU memory and "
            f"{free_device / gib:.1f} GiB is free; use population<={max(free_device // max(tensors, 1), 1)}"
        )


# ---- the population -------------------------------------------------------------------------
class Population:
    def __init__(self, cfg: DictConfig):
        if cfg.population > 1:  # (before K runs are even described: population=100000 is refused at once)
            check_memory(cfg, cfg.population)
        self.cfg = cfg
        self.kernel = kernel_of(cfg)
        self.members = [Run(member) for member in member_configs(cfg)]
        for member in self.members:  # (a checkpoint says so: resumed otherwise, rounding differs)
            member.stacked = self.kernel == "stacked"

    def train(self) -> int:
        """Run, resume or skip each member, like ``Lifecycle.train`` does for one run; returns
        the worst exit code (0: all finished). Nothing is created before every seed's directory
        has been checked."""
        try:
            active = [m for m in self.members if not m.store.finished(m.length_key)]
            if not active:
                return 0
            for member in active:
                member.store.check()
            found = [m.store.prepare() for m in active]
            for member, checkpoint in zip(active, found):
                member.build(resuming=checkpoint is not None)
                if checkpoint is not None:
                    member.restore(checkpoint)
                member.torch_rng = torch.get_rng_state()
                if member.device.type == "cuda":
                    member.cuda_rng = torch.cuda.get_rng_state(member.device)
            return self.loop(active, [f is not None for f in found])
        finally:
            for member in self.members:
                member.store.release()

    def loop(self, members: list[Run], resumed: list[bool]) -> int:
        cfg, members, failed = self.cfg, list(members), []
        for member, was_resumed in zip(members, resumed):
            with own_rng(member):
                member.begin(was_resumed)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = progress_bar(
            cfg,
            sum(m.step for m in members),
            len(members) * cfg.total_steps,
            f"{len(members)} seeds {cfg.agent.name}/{cfg.intervention} {cfg.env.game}",
            unit="seed-step",
        )
        for member in members:
            member.bar = bar
        start, started = sum(m.step for m in members), time.perf_counter()
        printed, learn = started, None  # (without a terminal: a line every 10 s instead of the bar)
        try:
            while running := [m for m in members if m.running()]:
                before = sum(m.step for m in running)
                if self.kernel == "stacked" and learn is None and len({m.step for m in running}) == 1:
                    learn = StackedLearning(running, own_rng)
                if learn is not None:
                    errors = learn.advance(running)
                else:  # (the stacked kernel waits for seeds resumed from an earlier step to catch up)
                    behind = min(m.step for m in running) if self.kernel == "stacked" else None
                    errors = [e for m in running if behind in (None, m.step) for e in self._advance(m)]
                for member, error in errors:  # that seed stops where a separate run would; the others go on
                    print(f"error: seed {member.cfg.seed}: {error}", file=sys.stderr, flush=True)
                    members.remove(member)
                    failed.append(member)
                    learn = None
                bar.update(sum(m.step for m in running) - before)
                if bar.disable and cfg.log.progress and time.perf_counter() - printed >= 10:
                    printed = time.perf_counter()
                    done = sum(m.step for m in members)
                    rate = (done - start) / max(printed - started, 1e-9)
                    print(
                        f"{done:,}/{len(members) * cfg.total_steps:,} seed-steps, {rate:,.0f} seed-steps/s",
                        flush=True,
                    )
        finally:
            bar.close()
            for member in (*members, *failed):
                member.env.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        codes = [1] * len(failed)
        for member in members:
            with own_rng(member):
                try:
                    codes.append(member.end())
                except RunError as error:
                    print(f"error: seed {member.cfg.seed}: {error}", file=sys.stderr)
                    codes.append(1)
        rate = (sum(m.step for m in (*members, *failed)) - start) / max(time.perf_counter() - started, 1e-9)
        print(
            f"population of {len(members) + len(failed)} seeds ({self.kernel} kernel): "
            f"{rate:,.0f} seed-steps/s this session"
        )
        return max(codes)

    @staticmethod
    def _advance(member: Run) -> list[tuple[Run, RunError]]:
        """One step of one seed (the loop kernel); its error, if it fails (a non-finite metric)."""
        try:
            with own_rng(member):
                member.advance()
        except RunError as error:
            return [(member, error)]
        return []

    def _on_signal(self, signum, frame) -> None:
        for member in self.members:
            member.stop_signal = signum


@contextlib.contextmanager
def own_rng(member: Run):
    """Torch's global RNGs as this member's separate run would have them."""
    torch.set_rng_state(member.torch_rng)
    cuda = member.device.type == "cuda"
    if cuda and getattr(member, "cuda_rng", None) is not None:
        torch.cuda.set_rng_state(member.cuda_rng, member.device)
    try:
        yield
    finally:
        member.torch_rng = torch.get_rng_state()
        if cuda:
            member.cuda_rng = torch.cuda.get_rng_state(member.device)
