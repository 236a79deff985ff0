"""``two_hot``: a categorical value head trained on two-hot targets (Schrittwieser et al. 2020;
Lyle et al. 2024 for its effect on plasticity). See nets/values.py."""
from __future__ import annotations

from dataclasses import dataclass

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import register
from plasticity_bench.nets.values import CategoricalValues, two_hot


@dataclass
class TwoHotConfig:
    bins: int = ranged(51, ge=2)
    """Atoms of the support."""
    v_min: float = ranged(-10.0)
    """Lowest value of the support (targets below are clamped)."""
    v_max: float = ranged(10.0)
    """Highest value (clipped Atari rewards; raise it for MinAtar's unclipped returns)."""


@register("two_hot")
class TwoHot(CategoricalValues):
    Config = TwoHotConfig
    incompatible = ("hl_gauss",)

    def __init__(self, cfg: TwoHotConfig):
        super().__init__(cfg, two_hot)
