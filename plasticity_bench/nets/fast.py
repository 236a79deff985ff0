"""The speed paths: code that computes what a plainer version would, faster on the machines
``make bench`` measured, each behind a named setting (``speed.<name>`` in a run config; all on by
default) so that it can be turned off to compare or to rule it out:

- ``patch_conv``: the MinAtar CNN's convolution through gathered patches (``PatchConv2d``, CPU,
  batches up to ``PATCH_MAX_BATCH``) instead of oneDNN's kernel;
- ``channels_last``: the Nature CNN's weights and inputs laid out NHWC (``networks.ToFloat``),
  as oneDNN's convolutions want them, instead of copying into that layout at every layer;
- ``compiled_rmsprop``: centred RMSProp's step compiled by ``torch.compile`` on the CPU
  (``nets.optim``) instead of eager foreach kernels.

Each rounds differently from the plain path (the tests hold both to the same values within float
tolerance), so a run's CSVs are reproducible for one setting; the settings are training keys.
Paths that gained less than 5% of a training step in make bench were removed rather than kept."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SpeedConfig:
    patch_conv: bool = True
    """MinAtar CNN convolution through gathered patches (CPU)."""
    channels_last: bool = True
    """Nature CNN in NHWC memory layout."""
    compiled_rmsprop: bool = True
    """Centred RMSProp's step compiled with torch.compile (CPU; eager if no C++ compiler)."""


SPEED = SpeedConfig()
"""The settings in force in this process (``use(cfg.speed)`` sets them when a run is built)."""


def use(settings) -> None:
    """Apply ``speed.*`` of a run config (a mapping or a SpeedConfig) to this process."""
    for name in vars(SPEED):
        value = settings[name] if isinstance(settings, dict) else getattr(settings, name)
        setattr(SPEED, name, bool(value))


PATCH_MAX_BATCH = 256  # the largest batch PatchConv2d computes through patches (faster up to here)


class PatchConv2d(nn.Conv2d):
    """A stride-1, unpadded Conv2d (the MinAtar CNN's) computed on the CPU through explicit
    patches: each example's patches gathered into a column matrix by one precomputed index,
    and the weight, as a matrix, times every example's columns in one batched product;
    autograd differentiates that. Same parameters, same module to interventions and probes,
    and the output is the library's contiguous (N, C, H, W). Why: on a 10x10x4 input oneDNN
    takes the weight gradient far below its matrix-product speed, and the patches beat it up
    to batches of ``PATCH_MAX_BATCH`` (make bench), so larger batches, unbatched inputs and other
    devices keep the library kernel."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        # stride 1, no padding: what the patches assume
        super().__init__(in_channels, out_channels, kernel_size)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # (3-dim: unbatched)
        if x.device.type != "cpu" or x.dim() != 4 or not 0 < x.shape[0] <= PATCH_MAX_BATCH:
            return super()._conv_forward(x, weight, bias)
        n, channels, height, width = x.shape
        k = self.kernel_size[0]
        rows, cols = height - k + 1, width - k + 1
        columns = x.reshape(n, -1).index_select(1, patch_index(channels, height, width, k, x.device))
        columns = columns.view(n, -1, rows * cols)  # (example, weight entry, output position)
        # the same matrix for each example, no copy
        weights = weight.reshape(1, weight.shape[0], -1).expand(n, -1, -1)
        y = (
            torch.bmm(weights, columns)
            if bias is None
            else torch.baddbmm(bias.view(1, -1, 1), weights, columns)
        )
        return y.view(n, -1, rows, cols)


_PATCH_INDEX: dict[tuple, torch.Tensor] = {}


def patch_index(channels: int, height: int, width: int, kernel: int, device: torch.device) -> torch.Tensor:
    """Positions in a flattened (channels, height, width) input of the column matrix's
    entries: one row per weight entry, in the order of a flattened Conv2d weight (channel, row,
    column), each row running over the output positions."""
    key = (channels, height, width, kernel, device)
    if key not in _PATCH_INDEX:
        with torch.inference_mode(False):  # (first built while acting, it must still serve training)
            _PATCH_INDEX[key] = _patch_positions(channels, height, width, kernel).to(device)
    return _PATCH_INDEX[key]


def _patch_positions(channels: int, height: int, width: int, kernel: int) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(height - kernel + 1), torch.arange(width - kernel + 1), indexing="ij")
    c, di, dj = torch.meshgrid(
        torch.arange(channels), torch.arange(kernel), torch.arange(kernel), indexing="ij"
    )
    position = (i.reshape(1, -1) + di.reshape(-1, 1)) * width + j.reshape(1, -1) + dj.reshape(-1, 1)
    return (c.reshape(-1, 1) * height * width + position).reshape(-1)
