"""``weight_clip``: after every optimizer step, each weight is clipped to [-kappa b, kappa b], b
the bound of its layer's initialisation distribution (Elsayed, Lan, Lyle and Mahmood 2024,
"Weight Clipping for Deep Continual and Reinforcement Learning"): weights cannot drift far from
the scale they started at, which keeps units trainable.

The layers are the Conv2d and Linear layers of the body and head (``nets.surgery.weight_layers``),
weight and bias; PyTorch's default initialisation draws both from U(-b, b), b = 1 / sqrt(fan_in)
(``BlockLinear``: the fan-in of one block, its weight's second axis). LayerNorm gains and
offsets are not clipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import Intervention, register
from plasticity_bench.nets.surgery import trained_weight, weight_layers


@dataclass
class WeightClipConfig:
    kappa: float = ranged(2.0, gt=0)
    """Clip each weight to kappa x its layer's initialisation bound (the paper's default: 2)."""


def init_bound(layer: nn.Module) -> float:
    """b of the U(-b, b) that PyTorch's default initialisation draws this layer's weights from."""
    return 1 / math.sqrt(math.prod(trained_weight(layer).shape[1:]))


@register("weight_clip")
class WeightClip(Intervention):
    Config = WeightClipConfig
    incompatible = ("plasticity_injection",)  # it would clip the frozen old head, not the injected one

    @torch.no_grad()
    def after_update(self, agent, step: int) -> dict:
        for _, layer in weight_layers(agent.network):
            limit = self.cfg.kappa * init_bound(layer)
            trained_weight(layer).clamp_(-limit, limit)
            if layer.bias is not None:
                layer.bias.clamp_(-limit, limit)
        return {}
