"""Activation capture: what each body layer computes on a batch, for the probes and for ReDo.

The body's activation layers are the modules named ``act*`` (nets.networks builds them so); each
is reported under the name of the weight layer that feeds it (``conv1``, ``fc4``, ...).
"""

from __future__ import annotations

import torch
from torch import nn

from plasticity_bench.nets.networks import eval_mode


def weight_layer_names(body: nn.Sequential) -> dict[str, str]:
    """``act`` module name -> name of the Conv2d/Linear layer feeding it."""
    names, last = {}, ""
    for name, module in body.named_children():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            last = name
        elif name.startswith("act"):
            names[name] = last or name
    return names


@torch.no_grad()
def capture(network: nn.Module, inputs: torch.Tensor) -> tuple[dict, dict, torch.Tensor]:
    """(pre-activations, activations) per reported layer, and the body's output features (the body
    that acts: ``Network.acting_body``)."""
    body = network.acting_body()
    labels = weight_layer_names(body)
    pre, post, handles = {}, {}, []
    for name, module in body.named_children():
        if name in labels:

            def hook(_, args, output, label=labels[name]):
                pre[label], post[label] = args[0].detach(), output.detach()

            handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(network):
            features = body(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return pre, post, features


def per_unit(x: torch.Tensor) -> torch.Tensor:
    """(batch, units, *spatial) -> (batch, units, positions)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def towers(network: nn.Module) -> int:
    """How many independent towers the acting body's units form (nets.networks ``towers``)."""
    return getattr(network.acting_body(), "towers", 1)


def dormant_scores(activation: torch.Tensor, towers: int = 1) -> torch.Tensor:
    """ReDo's score per unit: mean |activation| over inputs (and positions) / the layer's mean, the
    mean taken within the unit's tower (separate networks are scored each on its own scale)."""
    unit_mean = per_unit(activation).abs().mean(dim=(0, 2))
    by_tower = unit_mean.view(towers, -1)
    return (by_tower / (by_tower.mean(1, keepdim=True) + 1e-9)).flatten()
