"""One shifts run: a network trained with Adam on a sequence of tasks (shifts.tasks), with an
intervention plugged in, and measured at the end of every task.

It writes the run directory of the contract, ``RUN_DIR/shifts/<task>/<arch>/<variant>/
seed<k>/`` (``metrics.csv``, ``config.yaml``, ``done``), with ``step`` = optimizer steps so far.
Per task: ``task`` (its index), ``train_loss``, ``train_accuracy`` (classification) or ``fvu``
(regression: fraction of variance unexplained), then the probes (probe_loss, dormant/zombie units,
feature rank, eNTK, weight norms; ``probe_loss_fresh`` once). A checkpoint after every task makes
a killed run resume where it stopped and write the same CSV; a resume with another config is
refused, as for the RL runner.

Interval interventions act where a task sequence makes them meaningful: ``redo``, ``reset`` and
``shrink_perturb`` at every task switch (``at_shift=true``, before the new task trains, so the
end-of-task measurements come a whole task later), logging what they did at the switch's step;
``plasticity_injection`` right after the first update of the middle task (its ``at`` follows
``tasks``, so a run with it cannot change ``tasks`` on resume unless ``at`` is given).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from plasticity_bench import interventions
from plasticity_bench.core.memory import keep_freed_memory
from plasticity_bench.core.ranges import check, ranged
from plasticity_bench.core.schema import METRICS_COLUMNS
from plasticity_bench.nets.learner import Learner
from plasticity_bench.nets.networks import build_network
from plasticity_bench.nets.values import CategoricalValues, ScalarValues
from plasticity_bench.probes import ProbeConfig, Prober
from plasticity_bench.runner.compose import hydra_compose, whole_numbers
from plasticity_bench.runner.lifecycle import Lifecycle
from plasticity_bench.runner.store import run_directory, variant_label
from plasticity_bench.shifts.tasks import TASKS, digits


@dataclass
class ShiftsConfig:
    task: str = ranged("label_reset", choices=tuple(TASKS))
    """One of shifts.tasks.TASKS."""
    intervention: str = "none"
    """A registry name or an a_b composition, as for the RL suites."""
    variant: str = "auto"
    """The run's label in its path and CSVs; auto = the intervention plus every key that differs
    from the defaults and changes training, e.g. ln_l2[lr=0.01]."""
    seed: int = ranged(0, ge=0)
    run_dir: str = "runs"
    arch: str = ranged("mlp", choices=("mlp",))
    """The network: mlp = 3 x 256 ReLU (the digits are vectors)."""
    tasks: int = ranged(30, ge=1)
    steps_per_task: int = ranged(400, ge=1)
    batch_size: int = ranged(128, ge=1)
    lr: float = ranged(1e-3, gt=0)
    """Adam learning rate."""
    inputs: int = ranged(1000, ge=1, le=1797)
    """How many digits (the same inputs in every task)."""
    offset: float = ranged(10.0)
    """target_offset: the mean grows by this per task."""
    scale: float = ranged(10.0, ge=0)
    """target_scale: the spread grows by 1 + this x task."""
    smooth_fraction: float = ranged(1.0, gt=0, le=1)
    """smooth_shift: the fraction of a task over which the targets move."""
    target_norm: bool = False
    """Regression: train on targets standardised with each task's mean and spread (fvu is
    measured in the original units), which takes the target offset and scale away."""
    threads: int = ranged(1, ge=1, le=os.cpu_count() or 1)
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(interval=1, batch_size=256, steps=200))
    """The probes, run after every task (interval is not used here)."""
    interventions: Any = None
    """Per-family hyper-parameters: the RL defaults, but L2 1e-4 (the reference scale), redo,
    reset and shrink_perturb at every task switch, plasticity_injection at the middle switch."""


# Keys that stay out of the variant label: they do not change training, have their own level in
# the run path (task, arch, seed) or are the run's length (tasks).
NOT_TRAINING = ("seed", "run_dir", "threads", "probe", "tasks", "variant", "task", "arch", "intervention")
SHIFT_FAMILIES = ("redo", "reset", "shrink_perturb")


class Supervised(Learner):
    """The shifts learner: what interventions and probes expect of an agent (network, optimizer,
    rng, inputs), trained by the same ``train_step`` as the RL agents."""

    def __init__(self, cfg: ShiftsConfig, task, composition):
        self.cfg, self.task, self.interventions = cfg, task, composition
        self.rng = np.random.default_rng([cfg.seed, 1])
        self.values = composition.value_head()  # regression: a scalar output, or categorical
        shape = tuple(task.base_x.shape[1:])
        self.network = composition.build(lambda **kw: build_network(shape, task.outputs, cfg.arch, **kw))
        self.target = None
        self.optimizer = self.make_optimizer()

    def set_target_stats(self, task) -> None:
        """(mean, spread) that regression targets are standardised with this task: (0, 1) = off."""
        if self.cfg.target_norm and task.kind == "regression":
            self.target_stats = (float(task.y.mean()), float(task.y.std().clamp_min(1e-6)))
        else:
            self.target_stats = (0.0, 1.0)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([p for p in self.network.parameters() if p.requires_grad], lr=self.cfg.lr)

    def probe_inputs(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor:
        return self.task.x[torch.as_tensor(rng.integers(len(self.task.x), size=batch_size))]

    def prediction(self, outputs: torch.Tensor) -> torch.Tensor:
        """The scalar per input the eNTK probe differentiates: the regression output (the
        expected value of a categorical head), or the log-probability of class 0."""
        if self.task.kind == "regression":
            return self.values.expected(outputs)[:, 0]
        return torch.log_softmax(outputs, 1)[:, 0]


def make_task(cfg: ShiftsConfig):
    """The run's task sequence, its draws seeded from the run's seed."""
    x, labels = digits(cfg.inputs)
    return TASKS[cfg.task](x, labels, np.random.default_rng([cfg.seed, 2]), cfg)


def run_path(cfg: ShiftsConfig) -> Path:
    """RUN_DIR/shifts/<task>/<arch>/<variant>/seed<k>; ValueError for a part that would not name one
    directory (runner.store.run_directory)."""
    return run_directory(
        cfg.run_dir,
        ("suite", "shifts"),
        ("task", cfg.task),
        ("arch", cfg.arch),
        ("variant", cfg.variant),
        ("seed", f"seed{cfg.seed}"),
    )


def train(cfg: ShiftsConfig) -> Path:
    """Run (or resume, or skip) one task sequence; returns its directory."""
    run = ShiftsRun(cfg)
    run.train()
    return run.dir


class ShiftsRun(Lifecycle):
    """One task sequence through the run lifecycle every run shares (``runner.lifecycle``): a
    checkpoint after every task, the same resume rules and run store as the RL runs."""

    length_key = "tasks"

    def __init__(self, cfg: ShiftsConfig):
        identity = ("shifts", cfg.task, cfg.arch, cfg.intervention, cfg.variant, cfg.seed)
        super().__init__(run_path(cfg), OmegaConf.structured(cfg), identity)
        self.cfg = cfg

    def build(self, resuming: bool) -> None:
        cfg = self.cfg
        torch.set_num_threads(cfg.threads)
        keep_freed_memory()
        torch.manual_seed(cfg.seed)
        self.composition = interventions.Composition(cfg.intervention, cfg.interventions)
        self.task = make_task(cfg)
        self.learner = Supervised(cfg, self.task, self.composition)
        self.prober = Prober(cfg.probe, self.learner.network, cfg.seed)
        self.log = self.store.open_log("metrics", METRICS_COLUMNS, resuming=resuming)
        self.first = 0

    def restore(self, checkpoint: Path) -> None:
        state = self.store.load(checkpoint)
        learner, task = self.learner, self.task
        self.first = state["next_task"]
        learner.network.load_state_dict(state["network"])
        learner.optimizer = learner.make_optimizer()
        learner.optimizer.load_state_dict(state["optimizer"])
        learner.rng.bit_generator.state, task.rng.bit_generator.state = state["rng"], state["task_rng"]
        task.__dict__.update(state["task"])
        self.prober.load_state_dict(state["prober"])
        self.composition.load_state_dict(state["interventions"])
        torch.set_rng_state(state["torch_rng"])
        self.store.rewind(state)
        print(f"resuming {self.dir} at task {self.first + 1}")

    def loop(self, resumed: bool) -> int:
        """Train task after task, a checkpoint after each. SIGINT or SIGTERM stops it at the end
        of the step in progress, keeping the last task's checkpoint (the same command resumes)."""
        stopped: list[int] = []
        handlers = {
            s: signal.signal(s, lambda signum, frame: stopped.append(signum))
            for s in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            return self._tasks(stopped)
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)

    def _tasks(self, stopped: list[int]) -> int:
        cfg, learner, task, log, composition = self.cfg, self.learner, self.task, self.log, self.composition
        for t in range(self.first, cfg.tasks):
            task.start(t)
            learner.set_target_stats(task)
            step = t * cfg.steps_per_task
            if t > 0:  # a task switch: the interventions that act there act now, before training
                for metric, value in composition.on_shift(learner).items():
                    log.write(step, metric, "", float(value))
            for i in range(cfg.steps_per_task):
                hooks = train_step(learner, task, (i + 1) / cfg.steps_per_task, step + i + 1)
                for metric, value in hooks.items():  # an intervention acted after this update
                    log.write(step + i + 1, metric, "", float(value))
                if stopped:
                    print(
                        f"stopped by {signal.Signals(stopped[0]).name} in task {t + 1}; the checkpoint after "
                        f"task {t} is kept. Run the same command again to resume."
                    )
                    return 128 + stopped[0]
            step += cfg.steps_per_task
            measured = evaluate(learner, task)
            rows = [("task", "", t + 1), *((k, "", v) for k, v in measured.items()), *self.prober(learner)]
            for metric, layer, value in rows:
                log.write(step, metric, layer, value)
            probe = next(v for k, _, v in rows if k == "probe_loss")
            scores = ", ".join(f"{k} {v:.3f}" for k, v in measured.items())
            print(f"task {t + 1}/{cfg.tasks}: {scores}, probe_loss {probe:.3f}", flush=True)
            self.store.save(self.state(t + 1), logs=("metrics",))
        self.store.finish()
        return 0

    def state(self, next_task: int) -> dict:
        learner, task = self.learner, self.task
        return {
            "next_task": next_task,
            "network": learner.network.state_dict(),
            "optimizer": learner.optimizer.state_dict(),
            "rng": learner.rng.bit_generator.state,
            "task_rng": task.rng.bit_generator.state,
            "task": _task_state(task),
            "prober": self.prober.state_dict(),
            "interventions": self.composition.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }


def _task_state(task) -> dict:
    return {k: v for k, v in vars(task).items() if k in ("x", "y", "previous")}


def loss_fn(learner: Supervised, task, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross entropy to the labels, or the regression loss of the value head: MSE for a scalar
    output, cross entropy to the projected target for a categorical one (two_hot, hl_gauss)."""
    if task.kind == "classification":
        return F.cross_entropy(outputs, targets)
    mean, spread = learner.target_stats
    return learner.values.loss(outputs, (targets[:, 0] - mean) / spread)


def train_step(learner: Supervised, task, progress: float, step: int) -> dict:
    """One Adam step on a minibatch; returns what the interventions did after it (usually {})."""
    indices = torch.as_tensor(learner.rng.integers(len(task.x), size=learner.cfg.batch_size))
    loss = loss_fn(learner, task, learner.network(task.x[indices]), task.targets(progress)[indices])
    return learner.train_step(loss, step)[1]


@torch.no_grad()
def evaluate(learner: Supervised, task) -> dict[str, float]:
    outputs, targets = learner.network(task.x), task.targets(1.0)
    metrics = {"train_loss": float(loss_fn(learner, task, outputs, targets))}
    if task.kind == "classification":
        metrics["train_accuracy"] = float((outputs.argmax(1) == targets).float().mean())
    else:
        mean, spread = learner.target_stats
        metrics.update(
            {k: float(v) for k, v in learner.values.target_metrics((targets[:, 0] - mean) / spread).items()}
        )
        error = F.mse_loss(learner.values.expected(outputs) * spread + mean, targets)
        metrics["fvu"] = float(error) / float(targets.var(unbiased=False).clamp_min(1e-12))
    return metrics


def composed(argv: list[str]):
    """``configs/shifts.yaml`` (the typed defaults, the shifts choices of the interventions) with
    ``key=value`` overrides, composed by Hydra (plasticity injection's ``at`` following ``tasks``
    unless given)."""
    store = ConfigStore.instance()
    store.store(name="shifts_schema", node=ShiftsConfig)
    store.store(group="interventions", name="defaults", node=interventions.params_schema())
    overrides = [whole_numbers(a) for a in argv]
    cfg = hydra_compose("shifts", overrides)
    if not any(a.startswith("interventions.plasticity_injection.at=") for a in overrides):
        cfg.interventions.plasticity_injection.at = cfg.tasks // 2 * cfg.steps_per_task + 1  # the middle task
    return cfg


def config_from(argv: list[str]) -> ShiftsConfig:
    """``key=value`` overrides onto the typed defaults; any bad input is a one-line ValueError."""
    cfg = composed(argv)
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task '{cfg.task}'; valid: {', '.join(TASKS)}")
    check(cfg, ShiftsConfig)
    check(cfg.probe, ProbeConfig, "probe.")
    composition = interventions.Composition(cfg.intervention, cfg.interventions)  # names and hyper-parameters
    if TASKS[cfg.task].kind == "classification" and not isinstance(composition.value_head(), ScalarValues):
        raise ValueError(
            f"intervention '{cfg.intervention}': a categorical value head needs a regression task "
            f"({', '.join(n for n, t in TASKS.items() if t.kind == 'regression')})"
        )
    if cfg.variant == "auto":  # what differs from the defaults of the same task sequence
        defaults = composed(
            [
                f"task={cfg.task}",
                f"intervention={cfg.intervention}",
                f"tasks={cfg.tasks}",
            ]
        )
        cfg.variant = variant_label(
            cfg.intervention, OmegaConf.to_container(defaults), OmegaConf.to_container(cfg), NOT_TRAINING
        )
    obj = OmegaConf.to_object(cfg)
    obj = dataclasses.replace(obj, interventions=OmegaConf.to_container(cfg.interventions))
    check_support(obj, composition)
    run_path(obj)  # every part names one directory inside run_dir
    return obj


def check_support(cfg: ShiftsConfig, composition) -> None:
    """A categorical value head must cover the targets it is trained on: refuse a run in which a
    task would clamp most of its targets to the support's edge (the regression targets of
    target_offset and target_scale grow far past the RL default [-10, 10])."""
    head = composition.value_head()
    if not isinstance(head, CategoricalValues) or cfg.target_norm:
        return
    family = next(p.name for p in composition.parts if p.value_head() is not None)
    task = make_task(cfg)  # the run's own task draws
    for t in range(cfg.tasks):
        task.start(t)
        targets = task.targets(1.0)[:, 0]
        clamped = float(head.target_metrics(targets)["target_clamped_frac"])
        if clamped > 0.5:
            bound = float(targets.abs().max())
            raise ValueError(
                f"interventions.{family}: the support [{head.v_min:g}, {head.v_max:g}] would clamp "
                f"{clamped:.0%} of task {t + 1}'s targets (they reach {bound:.3g}); set target_norm=true "
                f"or widen it, e.g. interventions.{family}.v_min=-{bound:.0f} "
                f"interventions.{family}.v_max={bound:.0f}"
            )
