"""``ln``: LayerNorm before every nonlinearity of the body (Lyle et al. 2023, 2024).

Counters the preactivation-shift mechanism: units cannot drift into being dead or linear."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from plasticity_bench.interventions import Intervention, register


@dataclass
class LayerNormConfig:
    pass


@register("ln")
class LayerNorm(Intervention):
    Config = LayerNormConfig

    def build(self, factory):
        return functools.partial(factory, layer_norm=True)
