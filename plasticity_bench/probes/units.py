"""Unit-level diagnostics from one forward pass: dormant, dead and zombie units, feature rank.

The activations come from ``nets.capture`` (each reported under the name of the weight layer that
feeds it: ``conv1``, ``fc4``, ...). In a conv layer a unit is a channel, as in ReDo.
"""

from __future__ import annotations

import torch
from torch import nn

from plasticity_bench.nets.capture import capture, dormant_scores, per_unit, towers

DORMANT_TAUS = (0.0, 0.025, 0.1)


def zombie_mask(preactivation: torch.Tensor) -> torch.Tensor:
    """Units whose pre-activation is positive on every input (and position): linearised."""
    return (per_unit(preactivation) > 0).all(dim=2).all(dim=0)


def effective_rank(features: torch.Tensor, delta: float = 0.01) -> int:
    """Smallest k whose top-k singular values hold (1 - delta) of their sum."""
    singular = torch.linalg.svdvals(features.double())
    if singular.sum() <= 0:
        return 0
    cumulative = torch.cumsum(singular, 0) / singular.sum()
    return int((cumulative < 1 - delta).sum()) + 1


def unit_diagnostics(network: nn.Module, inputs: torch.Tensor) -> list[tuple[str, str, float]]:
    """(metric, layer, value) rows; layer "" is the fraction over all units of the body."""
    pre, post, features = capture(network, inputs)
    split = towers(network)
    rows = []
    totals = {tau: 0 for tau in DORMANT_TAUS} | {"zombie": 0, "units": 0, "preactivations": 0}
    for layer in post:
        scores, zombies = dormant_scores(post[layer], split), zombie_mask(pre[layer])
        for tau in DORMANT_TAUS:
            count = int((scores <= tau).sum())
            rows.append((f"dormant_frac@{tau}", layer, count / len(scores)))
            totals[tau] += count
        rows.append(("zombie_frac", layer, float(zombies.float().mean())))
        totals["zombie"] += int(zombies.sum())
        totals["units"] += len(scores)
        totals["preactivations"] += len(zombies)  # fewer than units after a CReLU
    if totals["units"]:
        rows += [(f"dormant_frac@{tau}", "", totals[tau] / totals["units"]) for tau in DORMANT_TAUS]
        rows.append(("zombie_frac", "", totals["zombie"] / totals["preactivations"]))
    rows.append(("feature_srank", "", float(effective_rank(features.flatten(1)))))
    return rows
