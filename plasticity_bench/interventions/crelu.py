"""``crelu``: concatenated ReLU activations (Abbas et al. 2023, "Loss of Plasticity in Continual
Deep RL"): [relu(x), relu(-x)], so no unit can die. Every width is scaled by 1/sqrt(2) so that the
parameter count stays that of the ReLU network (within a few percent)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import Intervention, register


@dataclass
class CReLUConfig:
    width_scale: float = ranged(1 / math.sqrt(2), gt=0)
    """Width multiplier of every layer (1/sqrt(2) keeps the parameter count)."""


@register("crelu")
class CReLU(Intervention):
    Config = CReLUConfig
    incompatible = ("redo",)  # ReDo recycles pre-activation units; CReLU doubles what it would score

    def build(self, factory):
        return functools.partial(factory, activation="crelu", width_scale=self.cfg.width_scale)
