"""``plasticity_injection`` (Nikishin et al. 2023, "Deep Reinforcement Learning with Plasticity
Injection"): at agent step ``at``, freeze the network's head theta and add a fresh head theta'
minus a frozen copy of it, ``h(z) = h_theta(z) + h_theta'(z) - h_theta'_0(z)``, where z is the
output of the encoder. The output does not change at injection, but from then on the new head
learns with the plasticity of a fresh initialisation; the encoder keeps training.

The head here is everything above the encoder, hidden layers included, as in the paper: for a
convolutional body (Nature CNN, MinAtar CNN), every layer after the convolutions (``fc*`` with
their norms and activations) plus the output layer; for an MLP, its last hidden layer plus the
output layer. A fresh copy of a lone output layer would be a zero-initialised linear readout
with no fresh nonlinear units.

The injected head exists from the start (inactive, its weights frozen), so a checkpoint has the
same shape before and after injection and resumes either way; the target network mirrors it.
``network.body`` stays the whole old path (encoder and old hidden layers), the layers surgery
walks; after the injection the probes measure the path that learns and acts,
``acting_body()``: the encoder under the injected hidden layers.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import Intervention, register
from plasticity_bench.nets.networks import Network, reinitialised


@dataclass
class PlasticityInjectionConfig:
    at: int = ranged(5_000_000, ge=0)
    """Agent step of the injection (the paper: halfway through training)."""


def encoder_end(body: nn.Sequential) -> int:
    """Index of the body's first layer above the encoder: the first after ``flatten`` when there
    are convolutions, else the last Linear layer (an MLP keeps its other layers as encoder)."""
    children = list(body.children())
    if any(isinstance(m, nn.Conv2d) for m in children):
        return next(i for i, m in enumerate(children) if isinstance(m, nn.Flatten)) + 1
    return max(i for i, m in enumerate(children) if isinstance(m, nn.Linear))


class InjectedNetwork(Network):
    """``body`` (encoder, then the old hidden layers), ``head`` (the old output layer), and the
    injected branch ``new`` (a copy of the old hidden layers and head, freshly initialised)
    minus its frozen copy ``new_frozen``, added once ``active``."""

    def __init__(self, network: Network):
        super().__init__(network.body, network.head)
        self.split = encoder_end(self.body)
        above = list(self.body.children())[self.split :]
        branch = nn.Sequential(
            OrderedDict(trunk=nn.Sequential(*copy.deepcopy(above)), head=copy.deepcopy(self.head))
        )
        self.new, self.new_frozen = reinitialised(branch), reinitialised(branch)
        self.register_buffer("active", torch.zeros((), dtype=torch.bool))
        self.register_load_state_dict_post_hook(lambda module, _: module.set_trainable())
        self.set_trainable()

    def old_trainables(self) -> list[nn.Module]:
        return [*list(self.body.children())[self.split :], self.head]

    def set_trainable(self) -> None:
        """Before injection the whole old network trains; after it the encoder and ``new``."""
        active = bool(self.active)
        for module in self.old_trainables():
            module.requires_grad_(not active)
        self.new.requires_grad_(active)
        self.new_frozen.requires_grad_(False)
        for module in (self.new_frozen, *([self.new] if not active else self.old_trainables())):
            for param in module.parameters():
                param.grad = None  # a stale gradient would otherwise outlive the freeze

    @torch.no_grad()
    def inject(self) -> None:
        self.new.load_state_dict(reinitialised(self.new).state_dict())
        self.new_frozen.load_state_dict(self.new.state_dict())
        self.active.fill_(True)
        self.set_trainable()

    def acting_body(self) -> nn.Sequential:
        """Before injection the body; after it the encoder under the injected hidden layers (named
        as the old ones), whose features the fresh head reads."""
        if not self.active:
            return self.body
        named = list(self.body.named_children())
        injected = zip([name for name, _ in named[self.split :]], self.new.trunk.children())
        body = nn.Sequential(OrderedDict([*named[: self.split], *injected]))
        body.towers = getattr(self.body, "towers", 1)
        return body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.body):
            if i == self.split:
                encoded = x
            x = layer(x)
        out = self.head(x)
        return out + self.new(encoded) - self.new_frozen(encoded) if self.active else out


@register("plasticity_injection")
class PlasticityInjection(Intervention):
    Config = PlasticityInjectionConfig
    incompatible = ("redo", "reset")  # they would recycle or reset a frozen head

    def build(self, factory):
        def with_injectable_head(**kwargs):
            return InjectedNetwork(factory(**kwargs))

        return with_injectable_head

    def after_update(self, agent, step: int) -> dict:
        network = agent.network
        if bool(network.active) or step < self.cfg.at:
            return {}
        network.inject()
        target = agent.target  # DQN's target network; PPO has none
        if target is not None:  # the same branch, so the targets do not jump either
            target.new.load_state_dict(network.new.state_dict())
            target.new_frozen.load_state_dict(network.new_frozen.state_dict())
            target.active.fill_(True)
            target.requires_grad_(False)
        agent.rebuild_optimizer()  # the new branch is trained, the old one frozen
        return {"plasticity_injected": torch.tensor(1.0)}
