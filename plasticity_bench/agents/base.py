"""What the rest of the code expects of an agent: the runner, the probes, the interventions and
the smoke tests use nothing else. An agent with a network derives from ``nets.learner.Learner``
(its one ``train_step``, ``rebuild_optimizer`` and ``restart``) and is built as
``Agent(cfg, spec, interventions, device, seed)``. ``register`` checks the methods when an agent
registers, and the runner checks the attributes once it is built."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from plasticity_bench.nets.learner import Learner


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What an agent is built for: the vectorized env's observations and actions."""

    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    num_actions: int
    num_envs: int

    @classmethod
    def of(cls, env, obs: np.ndarray) -> "EnvSpec":
        """From a suite's env (``envs.make_env``) and a batch of its observations."""
        return cls(tuple(env.single_observation_shape), obs.dtype, env.num_actions, env.num_envs)


# Methods every agent has, and those of an agent with a network (the probes and interventions).
# (An agent that learns in a population's stacked kernel also splits its update: runner/stacked.py.)
METHODS = ("act", "observe", "truncate", "task_switched", "state_dict", "load_state_dict")
NETWORK_METHODS = ("make_optimizer", "probe_inputs", "prediction")
NETWORK_ATTRIBUTES = ("network", "optimizer", "rng", "target", "values")


class Agent(Protocol):
    name: str
    Config: type
    """Dataclass of the agent's hyper-parameters, one docstring per field (``core.ranges.ranged``
    for the valid range of a number); ``configs/agent/<name>.yaml`` may override its defaults."""
    quick_overrides: tuple[str, ...]
    """Overrides that make it update within a few hundred agent steps (the smoke tests use them)."""
    network: nn.Module | None
    """The network probes measure and interventions change: a ``body`` (obs -> features, built
    by ``nets.networks``) and a ``head``. ``None`` (as a class attribute) for an agent without one."""
    optimizer: torch.optim.Optimizer
    """Holds exactly the network's trainable parameters (interventions keep it so)."""
    rng: np.random.Generator
    """The agent's own random stream (ReDo draws its inputs from it: part of training)."""
    target: nn.Module | None
    """A target network built like ``network`` (DQN), or None; plasticity injection mirrors it."""
    values: Any
    """The value head: ``interventions.value_head()`` (``nets.values``)."""

    def __init__(self, cfg: Any, spec: EnvSpec, interventions: Any, device: torch.device, seed: int) -> None:
        """Build the network through ``interventions.build(factory)`` (the factory takes the
        keyword arguments of ``nets.networks.build_network``, ``value_bins`` included), read values
        and losses through ``self.values = interventions.value_head()`` (``expected``, ``loss``),
        and make every update with ``self.train_step(loss, step, max_grad_norm)`` (``Learner``:
        the interventions' loss and gradient terms, clipping, the step, the interval
        interventions)."""

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        """One action per env for a batch of observations."""

    def observe(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        step: int,
    ) -> dict[str, torch.Tensor]:
        """Take one batched transition (true ``next_obs`` also at episode ends), learn if it is
        time, and return training metrics as detached scalars (empty when nothing happened)."""

    def truncate(self, obs: np.ndarray) -> None:
        """The episodes in progress end here without terminating (the runner restarts the envs,
        as at an Atari resume): treat each env's last transition as a time limit that
        bootstraps from ``obs``, the observation that followed it."""

    def task_switched(self) -> None:
        """A new task of a task sequence (env.shift) starts with the next step; DQN
        clears its replay there if ``agent.replay_at_shift=clear``."""

    def make_optimizer(self) -> torch.optim.Optimizer:
        """A new optimizer over the network's trainable parameters now, at the configured rate
        (``Learner.rebuild_optimizer`` calls it when an intervention changes which they are)."""

    def probe_inputs(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor | None:
        """A batch of the agent's own recent inputs for the probes, drawn with ``rng`` (the
        probe's, not the agent's); None while there is none. Only for agents with a network."""

    def prediction(self, outputs: torch.Tensor) -> torch.Tensor:
        """The network's prediction as one scalar per input, from its outputs (batch, outputs):
        the scalar the eNTK probe differentiates (DQN: Q of action 0; PPO: the value). Only for
        agents with a network."""

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: networks, optimizer, replay, RNG, counters."""

    def load_state_dict(self, state: dict) -> None: ...


def average_updates(updates: list[tuple[dict, dict]]) -> dict:
    """The metrics of one step's updates (each: its metrics, the interventions that acted after
    it): averaged over the updates, with those of the interventions that acted (once each)."""
    hooks = {}
    for _, acted in updates:
        hooks.update(acted)
    if len(updates) <= 1:  # (MinAtar: one update per frame, no arithmetic on the host)
        return {**(updates[0][0] if updates else {}), **hooks}
    first = updates[0][0]
    return {**{k: sum(u[k] for u, _ in updates) / len(updates) for k in first}, **hooks}


def has_network(cls: type) -> bool:
    """An agent without a network says so with the class attribute ``network = None``."""
    return getattr(cls, "network", "set per instance") is not None


def check_class(cls: type) -> None:
    """At registration: the methods and the Config the rest of the code uses."""
    needed = (*METHODS, *(NETWORK_METHODS if has_network(cls) else ()))
    missing = [m for m in needed if not callable(getattr(cls, m, None))]
    if has_network(cls) and not issubclass(cls, Learner):
        missing.append("the Learner base (nets/learner.py: train_step, rebuild_optimizer)")
    if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
        missing.append("Config (a dataclass)")
    if missing:
        raise TypeError(
            f"agent class {cls.__name__} does not implement the agent protocol: missing "
            f"{', '.join(missing)} (see agents/base.py)"
        )


def check_instance(agent: Any) -> None:
    """Once built: the attributes of an agent with a network (``target`` may be None)."""
    if agent.network is None:
        return
    missing = [a for a in NETWORK_ATTRIBUTES if not hasattr(agent, a)]
    if missing:
        raise TypeError(f"agent {type(agent).__name__} has no {', '.join(missing)} (see agents/base.py)")
