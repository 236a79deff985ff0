"""What every learner shares (DQN, PPO, the shifts learner, a user's agent): one training step
and an optimizer that interventions may ask to rebuild.

``Learner.train_step(loss, step)`` is the one place an update happens: the interventions' loss
terms, backward, their gradient terms (l2, l2init), clipping, the optimizer step, then the
interventions that act after an update (redo, reset, shrink_perturb, weight_clip, plasticity
injection). An intervention never replaces ``optimizer`` itself: it calls
``rebuild_optimizer()``, which keeps the learning rate a schedule has set.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from plasticity_bench.nets.optim import gradient_step


class Learner:
    network: nn.Module
    optimizer: torch.optim.Optimizer
    interventions: Any
    """The run's ``interventions.Composition`` (its hooks are called here)."""

    def make_optimizer(self) -> torch.optim.Optimizer:
        """A new optimizer over the network's trainable parameters now, at the configured rate."""
        raise NotImplementedError(f"{type(self).__name__} must define make_optimizer()")

    def train_step(
        self, loss: torch.Tensor, step: int, max_grad_norm: float = 0.0
    ) -> tuple[torch.Tensor, dict]:
        """One update on ``loss``; returns (the gradient norm before clipping, the metrics of the
        interventions that acted after it). ``step`` is the agent step (interval schedules)."""
        total = self.interventions.loss(self.network, loss)
        grad_norm = gradient_step(
            self.optimizer, total, max_grad_norm, lambda: self.interventions.gradients(self.network)
        )
        return grad_norm, self.interventions.after_update(self, step)

    def restart(self) -> None:
        """Forget what was collected with the current network: a fresh agent starts here
        (``interventions.reset`` with ``layers=0``). Nothing by default; PPO drops the rollout in
        progress, DQN starts an empty replay."""

    def task_switched(self) -> None:
        """A new task of a task sequence starts with the next step. Nothing by default; DQN may
        clear its replay (``agent.replay_at_shift``)."""

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def rebuild_optimizer(self, keep_state: bool = True) -> None:
        """A new optimizer over the trainable parameters now (an intervention changed which they
        are), at the learning rate in use; each parameter still trained keeps its state unless
        ``keep_state`` is False (a fresh agent), and a new one starts from zero."""
        old = self.optimizer
        self.optimizer = self.make_optimizer()
        self.set_learning_rate(old.param_groups[0]["lr"])
        if keep_state:
            for group in self.optimizer.param_groups:
                for param in group["params"]:
                    if param in old.state:
                        self.optimizer.state[param] = old.state[param]
