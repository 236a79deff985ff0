"""``plasticity_injection`` (Nikishin et al. 2023): at agent step ``at``, freeze the head theta
and add a fresh head theta' minus a frozen copy of it: ``h(x) = h_theta(x) + h_theta'(x) -
h_theta'_0(x)``. The output does not change at injection, but from then on the new head learns
with the plasticity of a fresh initialisation. The body keeps training.

The injected head exists from the start (inactive, its weights frozen), so a checkpoint has the
same shape before and after injection and resumes either way; the target network mirrors it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agents.networks import reinitialised
from interventions import register
from interventions.surgery import rebuild_optimizer


@dataclass
class PlasticityInjectionConfig:
    at: int = 5_000_000
    """Agent step of the injection (the paper: halfway through training)."""


class InjectedHead(nn.Module):
    def __init__(self, head: nn.Module):
        super().__init__()
        self.old, self.new, self.new_frozen = head, reinitialised(head), reinitialised(head)
        self.register_buffer("active", torch.zeros((), dtype=torch.bool))
        self.register_load_state_dict_post_hook(lambda module, _: module.set_trainable())
        self.set_trainable()

    def set_trainable(self) -> None:
        """Before injection only ``old`` trains; after it only ``new``."""
        active = bool(self.active)
        self.old.requires_grad_(not active)
        self.new.requires_grad_(active)
        self.new_frozen.requires_grad_(False)
        for frozen in (self.new_frozen, self.new if not active else self.old):
            for param in frozen.parameters():
                param.grad = None  # a stale gradient would otherwise outlive the freeze

    @torch.no_grad()
    def inject(self) -> None:
        self.new.load_state_dict(reinitialised(self.new).state_dict())
        self.new_frozen.load_state_dict(self.new.state_dict())
        self.active.fill_(True)
        self.set_trainable()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.old(x)
        return out + self.new(x) - self.new_frozen(x) if self.active else out


@register("plasticity_injection")
class PlasticityInjection:
    Config = PlasticityInjectionConfig
    incompatible = ("redo", "reset")  # they would recycle or reset a frozen head

    def __init__(self, cfg: PlasticityInjectionConfig):
        self.cfg = cfg

    def build(self, factory):
        def with_injectable_head(**kwargs):
            network = factory(**kwargs)
            network.head = InjectedHead(network.head)
            return network
        return with_injectable_head

    def after_update(self, agent, step: int) -> dict:
        head = agent.network.head
        if bool(head.active) or step < self.cfg.at:
            return {}
        head.inject()
        target = getattr(agent, "target", None)  # DQN's target network; PPO has none
        if target is not None:
            target.head.load_state_dict(head.state_dict())
            target.requires_grad_(False)
        rebuild_optimizer(agent)
        return {"plasticity_injected": torch.tensor(1.0)}
