"""``hl_gauss``: a categorical value head trained on Gaussian-smoothed targets (Farebrother et
al. 2024, "Stop Regressing"). See nets/values.py."""

from __future__ import annotations

from dataclasses import dataclass

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import register
from plasticity_bench.interventions.two_hot import CategoricalHead
from plasticity_bench.nets.values import hl_gauss


@dataclass
class HLGaussConfig:
    bins: int = ranged(51, ge=2)
    """Atoms of the support."""
    v_min: float = ranged(-10.0)
    """Lowest value of the support."""
    v_max: float = ranged(10.0)
    """Highest value (clipped Atari rewards; raise it for MinAtar's unclipped returns)."""
    sigma_ratio: float = ranged(0.75, gt=0)
    """Gaussian sigma in bin widths (0.75 in Farebrother et al. 2024)."""


@register("hl_gauss")
class HLGauss(CategoricalHead):
    Config = HLGaussConfig
    incompatible = ("two_hot",)

    def project(self, values, atoms):
        width = (self.cfg.v_max - self.cfg.v_min) / max(self.cfg.bins - 1, 1)
        return hl_gauss(values, atoms, sigma=self.cfg.sigma_ratio * width)
