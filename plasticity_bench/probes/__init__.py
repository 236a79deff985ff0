"""Plasticity probes and diagnostics, measured on a batch of the agent's own inputs.

The functions in this package are pure: ``(network, inputs, ...) -> metrics``, and work on
copies. ``Prober`` is what the runner holds: it draws the inputs with its own RNG, forks
torch's RNG around every probe, and keeps the initial weights (outside ``parameters()``) for
``dist_from_init``, so a run with probes acts exactly like the same run without them.
Definitions: docs/science.md, "Probes".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from plasticity_bench.core.intervals import crossed
from plasticity_bench.core.ranges import ranged
from plasticity_bench.nets.networks import reinitialised
from plasticity_bench.probes.fitting import probe_loss
from plasticity_bench.probes.ntk import entk_diagnostics, entk_gram
from plasticity_bench.probes.units import unit_diagnostics
from plasticity_bench.probes.weights import dist_from_init, param_norm

__all__ = [
    "ProbeConfig",
    "Prober",
    "first_distinct",
    "probe_loss",
    "reinitialised",
    "entk_gram",
    "entk_diagnostics",
    "unit_diagnostics",
    "param_norm",
    "dist_from_init",
]


@dataclass
class ProbeConfig:
    interval: int = ranged(100_000, ge=0)
    """Agent steps between probes; 0 = never."""
    batch_size: int = ranged(256, ge=1)
    """Inputs drawn from the agent's own data (replay buffer, latest rollout)."""
    steps: int = ranged(500, ge=1)
    """probe_loss: full-batch optimizer steps fitting the random targets."""
    outputs: int = ranged(10, ge=1)
    """probe_loss: outputs of the fresh head (random targets per input)."""
    optimizer: str = ranged("adam", choices=("adam", "agent"))
    """probe_loss optimizer: adam (at probe.lr; comparable across agents) | agent (the agent's own)."""
    lr: float = ranged(1e-3, gt=0)
    """probe_loss learning rate when optimizer=adam."""
    entk_batch: int = ranged(64, ge=2)
    """Inputs of the eNTK Gram matrix (per-example gradients: memory = batch x parameters)."""


def first_distinct(inputs: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` distinct rows of ``inputs``, in draw order: a random sample of the
    distinct states (a repeated state, frequent in MinAtar, makes any Gram singular).
    ``torch.unique`` alone would sort them, i.e. pick the lexicographically smallest states."""
    _, inverse = torch.unique(inputs.flatten(1), dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(inputs), dtype=torch.long, device=inputs.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(inputs), device=inputs.device), reduce="amin")
    return inputs[first.sort().values[:count]]


class Prober:
    def __init__(self, cfg: ProbeConfig, network: torch.nn.Module, seed: int):
        self.cfg = cfg
        self.initial = {k: v.detach().clone() for k, v in network.named_parameters()}
        self.rng = np.random.default_rng([seed, 0x9E0BE])  # a stream of its own
        self.fresh_reference_done = False
        self.last_seconds = 0.0
        self.restarts = 0  # the agent's fresh starts that ``initial`` has followed

    def restarted(self, network: torch.nn.Module, restarts: int) -> None:
        """The agent started afresh (reset with layers=0): ``dist_from_init`` measures from here."""
        self.initial = {k: v.detach().clone() for k, v in network.named_parameters()}
        self.restarts = restarts

    def due(self, before: int, after: int) -> bool:
        return crossed(before, after, self.cfg.interval)

    def make_optimizer(self, agent):
        if self.cfg.optimizer == "agent":
            return lambda params: type(agent.optimizer)(
                params, **{k: v for k, v in agent.optimizer.defaults.items() if k != "differentiable"}
            )
        if self.cfg.optimizer == "adam":
            return lambda params: torch.optim.Adam(params, lr=self.cfg.lr)
        raise ValueError(f"unknown probe.optimizer '{self.cfg.optimizer}'; valid: adam, agent")

    def __call__(self, agent) -> list[tuple[str, str, float]]:
        """(metric, layer, value) rows for the agent's network now; [] if it has no data yet."""
        inputs = agent.probe_inputs(self.cfg.batch_size, self.rng)
        if inputs is None:
            return []
        network, started = agent.network, time.perf_counter()
        with torch.random.fork_rng(devices=[inputs.device] if inputs.device.type == "cuda" else []):
            torch.manual_seed(int(self.rng.integers(2**62)))

            def fit(net):
                return probe_loss(net, inputs, self.cfg.steps, self.make_optimizer(agent), self.cfg.outputs)

            rows = [("probe_loss", "", fit(network))]
            if not self.fresh_reference_done:  # once per run: what a fresh network reaches here
                rows.append(("probe_loss_fresh", "", fit(reinitialised(network))))
                self.fresh_reference_done = True
            rows += unit_diagnostics(network, inputs)
            distinct = first_distinct(inputs, self.cfg.entk_batch)
            gram = entk_gram(network, distinct, agent.prediction)
            rows += [(k, "", v) for k, v in entk_diagnostics(gram).items()]
        rows += [
            ("param_norm", "", param_norm(network)),
            ("dist_from_init", "", dist_from_init(network, self.initial)),
        ]
        self.last_seconds = time.perf_counter() - started  # not logged: CSVs stay deterministic
        return rows

    def state_dict(self) -> dict:
        return {
            "initial": self.initial,
            "rng": self.rng.bit_generator.state,
            "fresh_reference_done": self.fresh_reference_done,
            "restarts": self.restarts,
        }

    def load_state_dict(self, state: dict) -> None:
        self.initial = state["initial"]
        self.rng.bit_generator.state = state["rng"]
        self.fresh_reference_done = state["fresh_reference_done"]
        self.restarts = state.get("restarts", 0)
