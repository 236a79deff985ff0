"""The one training loop: env -> agent -> CSV logs, with checkpoints, resume and a progress bar."""

from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from plasticity_bench import agents
from plasticity_bench.agents.base import EnvSpec, check_instance
from plasticity_bench.core.intervals import crossed
from plasticity_bench.core.memory import keep_freed_memory
from plasticity_bench.core.schema import METRICS_COLUMNS, RETURNS_COLUMNS, TIMING_COLUMNS
from plasticity_bench.envs import make_env
from plasticity_bench.interventions import Composition
from plasticity_bench.nets import fast
from plasticity_bench.probes import ProbeConfig, Prober
from plasticity_bench.runner.checkpoint import compact
from plasticity_bench.runner.config import run_path
from plasticity_bench.runner.lifecycle import Lifecycle
from plasticity_bench.runner.logger import MetricAverager, TensorBoardLog
from plasticity_bench.runner.store import RunError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device=cuda asked for, but torch sees no CUDA device; use device=cpu or auto")
    return torch.device(name)


def busy_cores() -> str:
    """A one-line note when the machine is already busy (its load average above its cores): runs
    side by side, each with a thread per core, slow each other down many times over."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores:
        return ""
    return (
        f"note: this machine is busy (load average {load:.1f} on {cores} cores): runs side by side "
        f"slow each other down; give each fewer torch threads (threads=1, now {torch.get_num_threads()}) "
        "or run fewer at once"
    )


def _numerics() -> str:
    """What decides float rounding on this machine: the torch build and the CPU kernels it picks."""
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()} kernels"


def progress_bar(cfg: DictConfig, initial: int, total: int, description: str, unit: str = "step") -> tqdm:
    """A tqdm bar, off without a terminal (a log file, nohup, Slurm) or with ``log.progress=false``."""
    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        unit_scale=True,
        smoothing=0.05,
        dynamic_ncols=True,
        disable=None if cfg.log.progress else True,
        desc=description,
    )


class Run(Lifecycle):
    """One RL run: env -> agent -> CSV logs (``train()``: ``runner.lifecycle.Lifecycle``)."""

    def __init__(self, cfg: DictConfig):
        identity = (cfg.env.suite, cfg.env.game, cfg.agent.name, cfg.intervention, cfg.variant, cfg.seed)
        super().__init__(run_path(cfg), cfg, identity)
        self.cfg = cfg
        self.stop_signal: int | None = None
        self.stacked = False  # learns in a population's stacked kernel (runner/population.py)

    def numerics(self) -> str:
        """What decides this run's float rounding (a checkpoint records it)."""
        return _numerics() + (", a population's stacked kernel" if self.stacked else "")

    def build(self, resuming: bool) -> None:
        """Env, agent and logs. A run killed before its first checkpoint starts over, and so
        do its CSV files (its rows will be written again, identically)."""
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        # subnormal floats as 0: optimizer moments of a parameter whose gradient stays 0 decay
        # through the subnormal range, where CPU arithmetic is up to 10x slower (make bench)
        torch.set_flush_denormal(True)
        keep_freed_memory()  # no page faults for each update's tensors (core/memory.py)
        torch.manual_seed(cfg.seed)
        self.device = pick_device(cfg.device)
        fast.use(cfg.speed)  # the speed paths this run takes (before its networks are built)
        self.env = make_env(cfg.env, cfg.seed)
        self.obs, _ = self.env.reset(seed=cfg.seed)
        self.interventions = Composition(cfg.intervention, cfg.interventions)
        agent_cls = agents.AGENTS[cfg.agent.name]
        self.agent = agent_cls(
            OmegaConf.to_object(cfg.agent),
            EnvSpec.of(self.env, self.obs),
            self.interventions,
            self.device,
            cfg.seed,
        )
        check_instance(self.agent)
        network = self.agent.network
        self.prober = Prober(ProbeConfig(**cfg.probe), network, cfg.seed) if network is not None else None
        self.returns_log = self.store.open_log("returns", RETURNS_COLUMNS, resuming)
        self.metrics_log = self.store.open_log("metrics", METRICS_COLUMNS, resuming)
        self.timing_log = self.store.open_log("timing", TIMING_COLUMNS, resuming)  # every session appends
        self.averager = MetricAverager()
        self.step = 0
        self.episode_return = np.zeros(self.env.num_envs)
        self.episode_length = np.zeros(self.env.num_envs, dtype=np.int64)
        self.recent_returns: collections.deque = collections.deque(maxlen=20)

    # ---- checkpoint ---------------------------------------------------------------------
    def save(self) -> None:
        self.store.save(
            {
                "step": self.step,
                "obs": self.obs,
                "env": self.env.state_dict(),
                "episode_return": self.episode_return,
                "episode_length": self.episode_length,
                "recent_returns": list(self.recent_returns),
                "agent": self.agent.state_dict(),
                "interventions": self.interventions.state_dict(),
                "averager": self.averager.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "prober": self.prober.state_dict() if self.prober else None,
                "numerics": self.numerics(),
            },
            logs=("returns", "metrics"),
        )

    def restore(self, checkpoint: Path) -> None:
        state = self.store.load(checkpoint)
        try:
            self.agent.load_state_dict(state["agent"])
            self.interventions.load_state_dict(state["interventions"])
            if self.prober and state.get("prober") is not None:
                self.prober.load_state_dict(state["prober"])
            elif self.prober:  # a checkpoint written before probes existed
                print(
                    "note: this checkpoint holds no probe state; dist_from_init is measured from the "
                    "resume point"
                )
        except (KeyError, RuntimeError, ValueError) as error:
            raise RunError(
                f"checkpoint {checkpoint} does not fit this config ({type(error).__name__}: "
                f"{str(error).splitlines()[0]}); it was left as it is. To start over, delete {self.dir}"
            )
        self.step = state["step"]
        self.episode_return, self.episode_length = state["episode_return"], state["episode_length"]
        self.env.load_state_dict(state["env"])
        if self.env.resumes_episodes:
            self.obs = state["obs"]
        else:  # EnvPool cannot save emulator state: the episodes in progress end here, as time
            self.agent.truncate(state["obs"])  # limits, and new ones start
            self.obs, _ = self.env.reset(seed=self.cfg.seed + self.step)
            self.episode_return[:], self.episode_length[:] = 0, 0
        self.recent_returns.extend(state["recent_returns"])
        self.averager.load_state_dict(state["averager"])
        torch.set_rng_state(state["torch_rng"])
        numerics = self.numerics()
        if state.get("numerics", numerics) != numerics:
            print(
                f"note: this run was checkpointed with {state['numerics']} and resumes with {numerics}; "
                "float rounding differs, so from here it will not match an uninterrupted run byte for byte"
            )
        self.store.rewind(state)

    # ---- the loop -----------------------------------------------------------------------
    def loop(self, resumed: bool) -> int:
        self.begin(resumed)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.bar = progress_bar(
            self.cfg,
            self.step,
            self.cfg.total_steps,
            f"{self.cfg.agent.name}/{self.cfg.intervention} {self.cfg.env.game}",
        )
        self._text_progress = (self.bar.disable and self.cfg.log.progress, *self._text_progress[1:])
        try:
            while self.running():
                self.advance()
                self.bar.update(self.env.num_envs)
        finally:
            self.bar.close()
            self.env.close()  # checkpoints below need no live env (state_dict reads no emulator)
            for s, h in handlers.items():
                signal.signal(s, h)
        return self.end()

    def begin(self, resumed: bool) -> None:
        """Before the first step of this session: resume checks, TensorBoard, the announcement."""
        cfg = self.cfg
        if resumed:
            if self.step > cfg.total_steps:  # a shorter run than the one already trained
                raise RunError(
                    f"{self.dir} was checkpointed at step {self.step:,}, past total_steps="
                    f"{cfg.total_steps:,}; ask for total_steps >= {self.step:,}, or delete that directory"
                )
            print(f"resuming {self.dir} from step {self.step:,}")
        self.tensorboard = TensorBoardLog(
            self.dir / "tensorboard" if cfg.log.tensorboard else None, purge_step=self.step if resumed else 0
        )  # (a restart drops old events)
        start_step, start_time = self.step, time.perf_counter()
        self._session = (start_step, start_time, start_step, start_time)  # start, last timing row
        # without a terminal (a log file, nohup, Slurm) the bar is off: a line per log interval instead
        self._text_progress = (False, start_step, start_time, -float("inf"))
        self._announce()
        self.task = getattr(self.env, "task", None)  # a sequence of tasks (env.shift), or None
        if self.task is not None and not resumed:
            self.metrics_log.write(0, "task", "", self.task)
        # plain ints: an OmegaConf lookup per step is a visible share of a MinAtar DQN frame
        self._intervals = (cfg.total_steps, cfg.log.interval, cfg.checkpoint.interval)

    def running(self) -> bool:
        return self.step < self._intervals[0] and self.stop_signal is None

    def advance(self) -> None:
        """One agent step over the envs: act, step, learn (``observe``), then log and checkpoint."""
        before = self.step
        transition = self.interact()
        self.record(before, self.agent.observe(*transition, self.step))

    def interact(self, actions: np.ndarray | None = None) -> tuple:
        """Act (unless ``actions`` were chosen for this agent: a population's batched acting) and
        step the envs; returns the transition ``agent.observe`` takes (without the step)."""
        if actions is None:
            actions = self.agent.act(self.obs, self.step)
        next_obs, rewards, terminated, truncated, info = self.env.step(actions)
        self.step += self.env.num_envs
        self._next = (next_obs, info.get("score", rewards), terminated | truncated)
        return self.obs, actions, rewards, info["final_obs"], terminated, truncated

    def record(self, before: int, metrics: dict) -> None:
        """After ``observe``: episodes, metric rows, probes, a task switch, a checkpoint."""
        total_steps, log_interval, checkpoint_interval = self._intervals
        self.averager.add(metrics)
        self.obs, scores, done = self._next
        self._track_episodes(scores, done)  # raw game scores
        if crossed(before, self.step, log_interval):
            self._log_metrics()
        if self.prober and self.prober.due(before, self.step):
            self._log_probes()  # (at a switch: the network that learned the task that ends)
        if getattr(self.env, "task", None) not in (None, self.task) and self.step < total_steps:
            self._switch_task()  # (a switch on the run's last step starts no task)
        if self.prober and getattr(self.agent, "restarts", 0) != self.prober.restarts:  # a fresh agent
            self.prober.restarted(self.agent.network, self.agent.restarts)
        if crossed(before, self.step, checkpoint_interval):
            self.save()

    def end(self) -> int:
        """After the last step of this session: a checkpoint if stopped, else the finished run."""
        start_step, start_time = self._session[:2]
        elapsed = time.perf_counter() - start_time
        rate = (self.step - start_step) / max(elapsed, 1e-9)
        recent = f"{np.mean(self.recent_returns):.2f}" if self.recent_returns else "n/a"
        if self.stop_signal is not None:
            self.save()
            self.tensorboard.close()
            print(
                f"stopped by {signal.Signals(self.stop_signal).name} at step {self.step:,}; "
                "checkpoint saved. Run the same command again to resume."
            )
            return 128 + self.stop_signal
        self._log_metrics()
        self._finish()
        print(
            f"done: {self.step:,} steps ({rate:,.0f} steps/s this session), mean return of the last "
            f"{len(self.recent_returns)} episodes {recent}; logs in {self.dir}"
        )
        return 0

    def _announce(self) -> None:
        """What this run will and will not do within its budget, before it starts."""
        cfg = self.cfg
        parts = [f"{self.dir}: steps {self.step:,} -> {cfg.total_steps:,}"]
        starts = cfg.agent.get("learning_starts")
        if starts is not None:
            parts.append(
                f"learning starts at step {starts:,}"
                if starts < cfg.total_steps
                else f"it never updates (agent.learning_starts={starts:,} >= total_steps)"
            )
        if self.prober and cfg.probe.interval:
            first = (self.step // cfg.probe.interval + 1) * cfg.probe.interval
            parts.append(
                f"first probe at step {first:,}"
                if first <= cfg.total_steps
                else f"no probe (probe.interval={cfg.probe.interval:,} > total_steps)"
            )
        print("; ".join(parts), flush=True)
        busy = busy_cores()
        if busy:
            print(busy, flush=True)

    def _print_progress(self) -> None:
        """One line (at most every 10 s): steps, steps/s, ETA, mean return."""
        on, start_step, start_time, last = self._text_progress
        now = time.perf_counter()
        if not on or now - last < 10:
            return
        rate = (self.step - start_step) / max(now - start_time, 1e-9)
        eta = time.strftime("%H:%M:%S", time.gmtime((self.cfg.total_steps - self.step) / max(rate, 1e-9)))
        recent = f"{np.mean(self.recent_returns):.2f}" if self.recent_returns else "n/a"
        print(
            f"step {self.step:,}/{self.cfg.total_steps:,} ({self.step / self.cfg.total_steps:.0%}), "
            f"{rate:,.0f} steps/s, ETA {eta}, "
            f"mean return of the last {len(self.recent_returns)} episodes {recent}",
            flush=True,
        )
        self._text_progress = (on, start_step, start_time, now)

    def _switch_task(self) -> None:
        """A new task (env.shift) starts with the next step: log its index, and let the
        interventions that act at task switches (``at_shift``) act, before the agent acts on it."""
        self.task = self.env.task
        self.metrics_log.write(self.step, "task", "", self.task)
        self.agent.task_switched()
        for name, value in self.interventions.on_shift(self.agent).items():
            self.metrics_log.write(self.step, name, "", float(value))

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def _track_episodes(self, rewards: np.ndarray, done: np.ndarray) -> None:
        self.episode_return += rewards
        self.episode_length += 1
        if done.any():
            for i in np.flatnonzero(done):
                self.returns_log.write(self.step, float(self.episode_return[i]), int(self.episode_length[i]))
                self.tensorboard.scalar("returns/episode_return", float(self.episode_return[i]), self.step)
                self.recent_returns.append(float(self.episode_return[i]))
            self.episode_return[done] = 0
            self.episode_length[done] = 0
            self.returns_log.flush()

    def _log_metrics(self) -> None:
        metrics = self.averager.pop()
        for name, value in metrics.items():
            if not np.isfinite(value):
                raise RunError(
                    f"{name} became {value} at step {self.step:,}; the last checkpoint and the logs "
                    f"up to here are kept in {self.dir}. Lower agent.lr or check the config"
                )
            self.metrics_log.write(self.step, name, "", value)
            self.tensorboard.scalar(f"train/{name}", value, self.step)
        self.metrics_log.flush()
        start_step, start_time, last_step, last_time = self._session
        if self.step > last_step:  # a run that ends on a log interval has its last row already
            now = time.perf_counter()
            rate = round((self.step - last_step) / max(now - last_time, 1e-9), 2)
            self.timing_log.write(self.step, start_step, round(now - start_time, 3), rate)
            self.timing_log.flush()
            self.tensorboard.scalar("speed/steps_per_second", rate, self.step)
            self.tensorboard.flush()
            self._session = (start_step, start_time, self.step, now)
        if self.recent_returns:
            self.bar.set_postfix(ret=f"{np.mean(self.recent_returns):.1f}", refresh=False)
        self._print_progress()

    def _log_probes(self) -> None:
        """Probe rows go straight to metrics.csv; a NaN here (e.g. the eNTK condition of a
        network whose gradients all vanished) is a measurement, not a failed run."""
        for metric, layer, value in self.prober(self.agent):
            self.metrics_log.write(self.step, metric, layer, value)
            self.tensorboard.scalar(f"probes/{metric}" + (f"/{layer}" if layer else ""), value, self.step)
        self.metrics_log.flush()

    def _finish(self) -> None:
        if self.agent.network is not None:
            torch.save(
                {k: compact(v.cpu()) for k, v in self.agent.network.state_dict().items()},
                self.dir / "model.pt",
            )
        self.tensorboard.close()
        self.store.finish()
