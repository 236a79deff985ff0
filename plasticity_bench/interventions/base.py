"""The intervention contract: a family derives from ``Intervention`` and overrides the hooks it
needs; the others do nothing. ``Composition`` (``interventions/__init__.py``) calls each hook of
each part in the order of the name (``ln_l2``: ln, then l2)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class Intervention:
    name: str = ""
    """Set by ``register``."""
    Config: type
    """Dataclass of the family's hyper-parameters (``interventions.<name>.<field>`` in a config)."""
    incompatible: tuple[str, ...] = ()
    """Families it cannot be composed with (checked both ways)."""
    stacks = True
    """Whether its network runs under ``torch.func.vmap`` (a population's stacked kernel,
    runner/stacked.py); False names a family whose forward cannot."""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def build(self, factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        """Change the architecture: wrap the network factory (its keywords are those of
        ``nets.networks.build_network``)."""
        return factory

    def value_head(self):
        """The value head this family brings (two_hot, hl_gauss), or None."""
        return None

    def loss(self, network: nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """Add a term to the training loss."""
        return loss

    def gradients(self, network: nn.Module) -> None:
        """After backward, before clipping and the step: add a penalty's gradient straight to the
        parameters' gradients (l2, l2init)."""

    def after_update(self, learner, step: int) -> dict:
        """After every gradient update (``Learner.train_step``): act at intervals; return the
        metrics to log (empty when it did nothing)."""
        return {}

    def on_shift(self, learner) -> dict:
        """At a task switch of a task sequence."""
        return {}

    def restarted(self, network: nn.Module) -> None:
        """A fresh agent started (``reset`` with ``layers=0``): what the family keeps of the first
        network (l2init's anchor) is taken from the new one."""

    def state_dict(self) -> dict:
        """What a resumed run needs to act as the uninterrupted one would."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
