"""The random-target probe (Lyle et al. 2023): how well can the network still fit new targets?

A copy of the network gets a fresh linear head with ``outputs`` units and is trained on the
inputs to fit targets ``a + sin(1e5 * f0(x))`` of a freshly initialised network ``f0`` of the
same architecture (``a``: a random offset per output). The targets are high-frequency and
unrelated to the task; the final mean squared error is the probe loss (higher = less plastic).
Everything happens on copies: the network passed in is never changed.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from plasticity_bench.nets.networks import Network, reinitialised


def with_new_head(network: nn.Module, inputs: torch.Tensor, outputs: int) -> nn.Module:
    """A copy of the network's acting body (``Network.acting_body``) under a fresh linear head with
    ``outputs`` units."""
    body = copy.deepcopy(network.acting_body())
    with torch.no_grad():
        features = body(inputs[:1]).flatten(1).shape[1]
    return Network(body, nn.Sequential(nn.Flatten(), nn.Linear(features, outputs)).to(inputs.device))


def random_targets(network: nn.Module, inputs: torch.Tensor, outputs: int) -> torch.Tensor:
    f0 = with_new_head(reinitialised(network), inputs, outputs)
    with torch.no_grad():
        offset = torch.randn(outputs, device=inputs.device)
        return offset + torch.sin(1e5 * f0(inputs))


def probe_loss(
    network: nn.Module,
    inputs: torch.Tensor,
    steps: int,
    make_optimizer: Callable,
    outputs: int = 10,
    targets: torch.Tensor | None = None,
) -> float:
    """Final MSE of a copy of ``network`` (fresh head) trained ``steps`` full-batch steps on
    random targets. Draws from torch's global RNG: callers fork it (see probes.Prober)."""
    if targets is None:
        targets = random_targets(network, inputs, outputs)
    model = with_new_head(network, inputs, outputs)
    model.requires_grad_(True)  # the network may be a frozen copy (a target network)
    optimizer = make_optimizer([p for p in model.parameters()])
    for _ in range(steps):
        loss = F.mse_loss(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(F.mse_loss(model(inputs), targets))
