"""``l2``: + coef * ||theta||^2 on the loss (coupled L2, not decoupled weight decay).

Counters the parameter-norm-growth mechanism (Lyle et al. 2024). The term's gradient,
``2 coef theta``, is added straight to the gradients after backward (the ``gradients`` hook):
the same gradient as autograd's through the loss, before clipping and the optimizer, for one
foreach op, where autograd would add a norm forward, a product and an accumulation backward to
every update; the term's value was never logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import Intervention, register


@dataclass
class L2Config:
    coef: float = ranged(1e-5, ge=0)
    """lambda in lambda * ||theta||^2 (Lyle et al. 2024 use about 1e-5 with Adam)."""


@register("l2")
class L2(Intervention):
    Config = L2Config

    def gradients(self, network: torch.nn.Module) -> None:
        params = [p for p in network.parameters() if p.requires_grad]
        add_to_gradients(params, params, 2 * self.cfg.coef)


@torch.no_grad()
def add_to_gradients(params: list[torch.Tensor], terms: list[torch.Tensor], scale: float) -> None:
    """``p.grad += scale * term`` for each parameter, in one foreach op; a parameter the loss did
    not reach (no gradient yet) gets ``scale * term`` as its gradient, as autograd would give it."""
    if not params:
        return
    for p, term in zip(params, terms):
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    torch._foreach_add_([p.grad for p in params], terms, alpha=scale)
