"""``redo``: Recycling Dormant neurons (Sokar, Agarwal, Castro and Evci 2023, "The Dormant Neuron
Phenomenon in Deep Reinforcement Learning", ICML). Every ``interval`` gradient updates, on a batch
of the agent's own inputs, each body unit whose tau-dormant score (probes.units) is <= tau gets
fresh incoming weights and a zero bias, and zero outgoing weights (so the network's output does
not jump), as in the authors' Dopamine code; the optimizer moments of all three are zeroed (the
Dopamine code leaves the bias moments; here every re-initialised weight starts from zero moments).

Defaults follow the paper's hyper-parameter table: recycling period 1,000 gradient updates, scores
on a minibatch of 64 inputs; tau 0.1, the paper's value at replay ratio 1 (it uses 0.025 at the
default ratio 0.25: ``interventions.redo.tau=0.025``). Counting updates, not agent steps, keeps
the period the same whatever ``agent.updates_per_step`` is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import register
from plasticity_bench.interventions.schedule import Scheduled
from plasticity_bench.nets.capture import capture, dormant_scores, towers
from plasticity_bench.nets.networks import BlockLinear, reinitialised
from plasticity_bench.nets.surgery import trained_weight, weight_layers, zero_moments


@dataclass
class ReDoConfig:
    interval: int = ranged(1000, ge=1)
    """Gradient updates between recycling rounds (Sokar et al. 2023)."""
    tau: float = ranged(0.1, ge=0)
    """Dormancy threshold on the unit's normalised mean |activation| (the paper: 0.025 at replay
    ratio 0.25)."""
    batch_size: int = ranged(64, ge=1)
    """Inputs the scores are measured on."""
    at_shift: bool = False
    """Recycle at every task switch instead of every ``interval`` updates (task sequences only)."""


def outgoing_weights(unit_mask: torch.Tensor, next_layer: nn.Module) -> torch.Tensor:
    """(weight-shaped) True on the weights of ``next_layer`` that read from the masked units: the
    input channels of a conv, the flattened (channel, position) columns of a linear layer after a
    conv, or a block-diagonal layer's own (``BlockLinear.input_mask``)."""
    weight = trained_weight(next_layer)
    if isinstance(next_layer, BlockLinear):
        return next_layer.input_mask(unit_mask)
    per_unit = weight.shape[1] // len(unit_mask)
    return _columns(unit_mask.repeat_interleave(per_unit), weight)


@register("redo")
class ReDo(Scheduled):
    Config = ReDoConfig
    unit = "updates"

    @torch.no_grad()
    def apply(self, agent) -> dict:
        inputs = agent.probe_inputs(self.cfg.batch_size, agent.rng)  # part of training: the agent's RNG
        if inputs is None:
            return {}
        _, activations, _ = capture(agent.network, inputs)
        layers = dict(weight_layers(agent.network))
        names = list(layers)
        split = towers(agent.network)
        masks = {name: dormant_scores(a, split) <= self.cfg.tau for name, a in activations.items()}
        for name, mask in masks.items():  # fresh incoming weights and zero biases first, for every layer ...
            if not mask.any():
                continue
            weight, fresh = trained_weight(layers[name]), trained_weight(reinitialised(layers[name]))
            weight[mask] = fresh[mask]
            zero_moments(agent.optimizer, weight, _rows(mask, weight))
            bias = layers[name].bias
            if bias is not None:
                bias[mask] = 0
                zero_moments(agent.optimizer, bias, mask)
        for name, mask in masks.items():  # ... then zero outgoing weights, so no recycled unit's
            following = layers[names[names.index(name) + 1]]  # output reaches the next layer
            outgoing = outgoing_weights(mask, following)
            weight = trained_weight(following)
            weight[outgoing] = 0
            zero_moments(agent.optimizer, weight, outgoing)
        recycled, total = sum(int(m.sum()) for m in masks.values()), sum(len(m) for m in masks.values())
        return {"redo_reset_frac": torch.tensor(recycled / max(total, 1))}


def _rows(mask: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (param.dim() - 1))).expand_as(param)


def _columns(mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return mask.view(1, -1, *([1] * (weight.dim() - 2))).expand_as(weight)
