"""``spectral_norm``: spectral normalisation of the body's last ``layers`` weight layers (Gogianu
et al. 2021, "Spectral Normalisation for Deep RL: an Optimisation Perspective": one layer, the
penultimate of the network, is enough). Each forward in training mode divides the weight by its
largest singular value, estimated by one power iteration (torch's parametrization), so the
layer's Lipschitz constant stays 1 and its effective learning rate falls as its norm grows.

The optimizer trains the unnormalised weight (``parametrizations.weight.original``): L2, the
weight probes and the re-initialising interventions act on it. Probes measure in evaluation
mode, where the power-iteration vectors are read but not updated."""

from __future__ import annotations

from dataclasses import dataclass

from torch.nn.utils.parametrizations import spectral_norm

from plasticity_bench.core.ranges import ranged
from plasticity_bench.interventions import Intervention, register
from plasticity_bench.nets.surgery import weight_layers


@dataclass
class SpectralNormConfig:
    layers: int = ranged(1, ge=1)
    """How many of the body's weight layers, counted from its output, are normalised
    (1 = the penultimate layer of the network, Gogianu et al.'s choice)."""
    power_iterations: int = ranged(1, ge=1)
    """Power iterations per training forward pass."""


@register("spectral_norm")
class SpectralNorm(Intervention):
    stacks = False  # torch's power iteration normalises into a buffer in place (out=), which vmap refuses
    Config = SpectralNormConfig

    def build(self, factory):
        def normalised(**kwargs):
            network = factory(**kwargs)
            body_layers = [layer for name, layer in weight_layers(network) if not name.startswith("head")]
            if self.cfg.layers > len(body_layers):
                raise ValueError(
                    f"spectral_norm: layers={self.cfg.layers} but the body has "
                    f"{len(body_layers)} weight layers"
                )
            for layer in body_layers[-self.cfg.layers :]:
                spectral_norm(layer, n_power_iterations=self.cfg.power_iterations)
            return network

        return normalised
