"""Sequences of supervised tasks, each isolating one mechanism of plasticity loss (Lyle et al.
2024): a network trains on task 1, then task 2 on the same inputs, ...

The inputs are 1,000 of sklearn's bundled 8x8 digits scaled to [0, 1] (nothing is downloaded).
A task draws what changes at ``start(t)``; ``targets(progress)`` gives the training targets at a
point of the task (``progress`` in [0, 1]; only ``smooth_shift`` moves within a task).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

TASKS: dict[str, type] = {}


def register(name: str):
    def add(cls):
        cls.name = name
        TASKS[name] = cls
        return cls

    return add


def digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    if not 1 <= n <= len(data.data):
        raise ValueError(f"shifts: inputs must be in 1..{len(data.data)} (sklearn's digits), got {n}")
    return torch.as_tensor(data.data[:n] / 16.0, dtype=torch.float32), torch.as_tensor(data.target[:n])


class Task:
    kind, outputs = "classification", 10

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator, cfg):
        self.base_x, self.labels, self.rng, self.cfg = x, labels, rng, cfg
        self.x, self.y = x, labels

    def start(self, t: int) -> None:
        raise NotImplementedError

    def targets(self, progress: float) -> torch.Tensor:
        return self.y

    def normal(self) -> torch.Tensor:
        return torch.as_tensor(self.rng.standard_normal((len(self.base_x), 1)), dtype=torch.float32)


@register("label_reset")
class LabelReset(Task):
    """Labels re-drawn uniformly at random every task: memorisation from scratch each time."""

    def start(self, t):
        self.y = torch.as_tensor(self.rng.integers(10, size=len(self.base_x)))


@register("label_permutation")
class LabelPermutation(Task):
    """The true labels under a new permutation of the 10 classes every task."""

    def start(self, t):
        self.y = torch.as_tensor(self.rng.permutation(10))[self.labels]


@register("input_permutation")
class InputPermutation(Task):
    """The true labels, with the 64 pixels under a new permutation every task."""

    def start(self, t):
        self.x = self.base_x[:, torch.as_tensor(self.rng.permutation(self.base_x.shape[1]))]


class Regression(Task):
    kind, outputs = "regression", 1


@register("target_offset")
class TargetOffset(Regression):
    """Targets ``z + offset * t``, z ~ N(0, 1) per input re-drawn every task: the mean grows."""

    def start(self, t):
        self.y = self.normal() + self.cfg.offset * t


@register("target_scale")
class TargetScale(Regression):
    """Targets ``z * (1 + scale * t)``: the spread grows."""

    def start(self, t):
        self.y = self.normal() * (1 + self.cfg.scale * t)


@register("abrupt_shift")
class AbruptShift(Regression):
    """Fresh N(0, 1) targets every task, switched at once at the task boundary."""

    def start(self, t):
        self.y = self.normal()


@register("smooth_shift")
class SmoothShift(Regression):
    """The same endpoints as abrupt_shift, but the targets move linearly from the previous task's
    to the new ones over the first ``smooth_fraction`` of the task."""

    def start(self, t):
        new = self.normal()
        self.previous, self.y = (new if t == 0 else self.y), new

    def targets(self, progress):
        alpha = min(progress / max(self.cfg.smooth_fraction, 1e-9), 1.0)
        return torch.lerp(self.previous, self.y, alpha)
