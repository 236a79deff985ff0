"""Parameter surgery that keeps the optimizer consistent (used by redo, reset, shrink_perturb,
plasticity_injection).

The invariant (tested after every hook): the optimizer holds exactly the network's trainable
parameters, and the moments of re-initialised weights are zero, so a fresh weight is not pushed
by the running averages of the weight it replaced (the defect Dopamine's ReDo fixes and
Plasticine's does not). Adam's per-parameter ``step`` is kept (it is one count per tensor, and
ReDo zeroes only some rows of one): its bias correction then treats the zeroed moments as
long-run averages of zero, so the first update of a zeroed weight is about 3.2 x lr
((1 - b1) / sqrt(1 - b2) with torch's defaults), growing to about 6.5 x lr by the tenth, before
the second moment catches up over some thousand steps; a fresh Adam's first step is 1 x lr (pinned
in tests/test_interventions.py). Centred RMSProp has no bias correction: zeroed moments behave
as a fresh optimizer's (first step about 4.6 x lr with alpha 0.95).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


def weight_layers(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the body's Conv2d/Linear layers in order, then the head's."""
    layers = [(n, m) for n, m in network.body.named_children() if isinstance(m, WEIGHT_LAYERS)]
    return layers + [
        (f"head.{n}" if n else "head", m)
        for n, m in network.head.named_modules()
        if isinstance(m, WEIGHT_LAYERS)
    ]


def trained_weight(layer: nn.Module) -> nn.Parameter:
    """The parameter the optimizer trains for ``layer.weight``: under spectral_norm, ``weight``
    is computed from it on every forward, and writing into the computed tensor changes nothing."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


@torch.no_grad()
def zero_moments(
    optimizer: torch.optim.Optimizer, param: nn.Parameter, mask: torch.Tensor | None = None
) -> None:
    """Zero the optimizer's running averages of ``param`` (where ``mask`` is True, or all)."""
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            if mask is None:
                value.zero_()
            else:
                value[mask] = 0


def optimizer_holds_exactly(optimizer: torch.optim.Optimizer, network: nn.Module) -> bool:
    held = [p for group in optimizer.param_groups for p in group["params"]]
    live = [p for p in network.parameters() if p.requires_grad]
    return len(held) == len(live) and {id(p) for p in held} == {id(p) for p in live}
