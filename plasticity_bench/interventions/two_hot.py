"""``two_hot``: a categorical value head trained on two-hot targets (Schrittwieser et al. 2020;
Lyle et al. 2024 for its effect on plasticity). See nets/values.py."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import Intervention, register
from plasticity_bench.nets.values import CategoricalValues, two_hot


@dataclass
class TwoHotConfig:
    bins: int = ranged(51, ge=2)
    """Atoms of the support."""
    v_min: float = ranged(-10.0)
    """Lowest value of the support (targets below are clamped)."""
    v_max: float = ranged(10.0)
    """Highest value (clipped Atari rewards; raise it for MinAtar's unclipped returns)."""


class CategoricalHead(Intervention):
    """What two_hot and hl_gauss share: the network gives ``bins`` logits per output, and the
    learners read values and losses through a ``CategoricalValues`` head."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.bins < 2 or cfg.v_max <= cfg.v_min:
            raise ValueError(
                f"interventions.{self.name}: need bins >= 2 and v_max > v_min, got {cfg.bins}, "
                f"[{cfg.v_min}, {cfg.v_max}]"
            )

    def project(self, values, atoms):
        """(B,) scalar targets -> (B, bins) distributions on the support."""
        raise NotImplementedError

    def build(self, factory):
        return functools.partial(factory, value_bins=self.cfg.bins)

    def value_head(self) -> CategoricalValues:
        return CategoricalValues(self.cfg.bins, self.cfg.v_min, self.cfg.v_max, self.project)


@register("two_hot")
class TwoHot(CategoricalHead):
    Config = TwoHotConfig
    incompatible = ("hl_gauss",)

    def project(self, values, atoms):
        return two_hot(values, atoms)
