"""``redo``: Recycling Dormant neurons (Sokar et al. 2023). Every ``interval`` agent steps, on a
batch of the agent's own inputs, each body unit whose tau-dormant score (probes.units) is <= tau
gets fresh incoming weights, zero outgoing weights (so the network's output does not jump), and
zeroed optimizer moments for both."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agents.networks import reinitialised
from interventions import register
from interventions.surgery import Every, trained_weight, weight_layers, zero_moments
from probes.units import capture, dormant_scores


@dataclass
class ReDoConfig:
    interval: int = 250_000
    """Agent steps between recycling rounds."""
    tau: float = 0.1
    """Dormancy threshold on the unit's normalised mean |activation| (0.025 for some games)."""
    batch_size: int = 256
    """Inputs the scores are measured on."""


def outgoing_columns(unit_mask: torch.Tensor, next_layer: nn.Module) -> torch.Tensor:
    """Input columns of ``next_layer.weight`` that read from the masked units: the input channels
    of a conv, or the flattened (channel, position) columns of a linear layer after a conv."""
    per_unit = next_layer.weight.shape[1] // len(unit_mask)
    return unit_mask.repeat_interleave(per_unit)


@register("redo")
class ReDo:
    Config = ReDoConfig

    def __init__(self, cfg: ReDoConfig):
        self.cfg, self.every = cfg, Every(cfg.interval)

    @torch.no_grad()
    def after_update(self, agent, step: int) -> dict:
        if not self.every(step):
            return {}
        inputs = agent.probe_inputs(self.cfg.batch_size, agent.rng)  # part of training: the agent's RNG
        if inputs is None:
            return {}
        _, activations, _ = capture(agent.network, inputs)
        layers = dict(weight_layers(agent.network))
        names = list(layers)
        masks = {name: dormant_scores(a) <= self.cfg.tau for name, a in activations.items()}
        for name, mask in masks.items():  # fresh incoming weights first, for every layer ...
            fresh = reinitialised(layers[name])
            for param, new in ((trained_weight(layers[name]), trained_weight(fresh)), (layers[name].bias, fresh.bias)):
                if param is not None and mask.any():
                    param[mask] = new[mask]
                    zero_moments(agent.optimizer, param, _rows(mask, param))
        for name, mask in masks.items():  # ... then zero outgoing weights, so no recycled unit's
            following = layers[names[names.index(name) + 1]]  # output reaches the next layer
            columns = outgoing_columns(mask, following)
            weight = trained_weight(following)
            weight[:, columns] = 0
            zero_moments(agent.optimizer, weight, _columns(columns, weight))
        recycled, total = sum(int(m.sum()) for m in masks.values()), sum(len(m) for m in masks.values())
        return {"redo_reset_frac": torch.tensor(recycled / max(total, 1))}

    def state_dict(self) -> dict:
        return {"last": self.every.last}

    def load_state_dict(self, state: dict) -> None:
        self.every.last = state["last"]


def _rows(mask: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (param.dim() - 1))).expand_as(param)


def _columns(mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return mask.view(1, -1, *([1] * (weight.dim() - 2))).expand_as(weight)
