"""How close an update runs to this machine's arithmetic peak, and what a faster update could give.

An update is mostly matrix products and convolutions. Counting their floating-point operations
(torch's ``FlopCounterMode``) and dividing by the update's time gives the rate it reaches; a
large square matrix product at the same thread count is the practical peak of this CPU in
float32. An agent step whose update ran at that peak would take its measured time less the
update's share of it above the peak: ``floor = step - update x (1 - rate / peak)``, so the run
would be ``step / floor`` times as fast. ``make bench`` prints that factor times each
``ours / reference`` ratio it can bound: how far ours could get ahead of a reference doing the
same arithmetic by speeding up the update alone.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def square_matmul(size: int = 1024) -> tuple[Callable[[], torch.Tensor], int]:
    """(a ``size`` x ``size`` float32 matrix product to time, its floating-point operations):
    timed at an update's thread count, the peak that update is measured against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return (lambda: torch.mm(a, b)), 2 * size**3


class _NoStep(torch.optim.Optimizer):
    """Stands in for the agent's optimizer while its update is counted: holds the same
    parameters, takes any learning rate an agent sets on it, and never steps."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.0})

    def step(self, closure=None):
        return None


def update_flops(agent, update) -> int:
    """Floating-point operations of one call of ``update`` (matrix products and convolutions,
    forward and backward), with the agent's optimizer swapped for one that never steps: the
    optimizer's elementwise arithmetic is not counted anyway, a compiled optimizer step must not
    meet the counting mode (a failed compile falls back to eager for the process), and the
    parameters stay as they were (the agent's counters and RNG move on as after any update)."""
    optimizer = agent.optimizer
    agent.optimizer = _NoStep([p for group in optimizer.param_groups for p in group["params"]])
    try:
        with FlopCounterMode(display=False) as counter:
            update()
    finally:
        agent.optimizer = optimizer
    return counter.get_total_flops()


def floor_seconds(step_seconds: float, update_seconds: float, peak_share: float) -> float:
    """Seconds per agent step if the update's arithmetic ran at the peak and all else stayed:
    ``update_seconds`` is the update's time per agent step inside the run, ``peak_share`` the
    share of the peak reached by the same update timed alone (the one rate there is to count)."""
    return step_seconds - update_seconds * (1 - min(peak_share, 1.0))
