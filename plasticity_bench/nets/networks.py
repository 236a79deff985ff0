"""Agent networks: a ``body`` (obs -> features) of standard layers and a ``head``.

Bodies are built from a spec of named layers so that interventions and probes can walk them
(``conv1``, ``act1``, ...); ``layer_norm=True`` puts a LayerNorm before every nonlinearity;
``activation="crelu"`` uses concatenated ReLUs, which double each layer's output, and
``width_scale`` scales every width (CReLU at 1/sqrt(2) keeps the parameter count).
``towers=(a, b, ...)`` (MLP only) builds one independent network per output group, as one module:
PPO's separate policy and value networks are ``towers=(actions, 1)``. Every tower reads the whole
input; after that, each layer is block-diagonal (``BlockLinear``: a tower reads only its own
features) and a LayerNorm normalises each tower's features apart (``TowerLayerNorm``), so the
towers share nothing, while interventions and probes walk one body and one head as usual.
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from plasticity_bench.nets.fast import SPEED, PatchConv2d

# (kind, out_channels_or_features, kernel, stride)
NATURE_CNN = [("conv", 32, 8, 4), ("conv", 64, 4, 2), ("conv", 64, 3, 1), ("flatten",), ("linear", 512)]
MINATAR_CNN = [("conv", 16, 3, 1), ("flatten",), ("linear", 128)]
MLP = [("flatten",), ("linear", 256), ("linear", 256), ("linear", 256)]
ARCHS = {"nature_cnn": NATURE_CNN, "minatar_cnn": MINATAR_CNN, "mlp": MLP}


class ToFloat(nn.Module):
    """uint8 pixels -> [0, 1] floats (bool MinAtar grids -> 0/1), in the dtype of the network's
    parameters: ``dtype`` is a buffer that ``.double()`` (or a functional call with float64
    buffers, as the eNTK probe makes) converts with them. Not persistent: not in checkpoints.
    ``channels_last`` (a speed path, nets/fast.py): batches of images come out laid out NHWC, as
    the Nature CNN's weights are, in the same pass as the cast; oneDNN would otherwise copy the
    input into that layout before the first convolution and again in its backward."""

    def __init__(self, scale: float, channels_last: bool = False):
        super().__init__()
        self.scale = scale
        self.channels_last = channels_last
        self.register_buffer("dtype", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (then a copy even of an input in the right dtype: mul_ must not write the caller's)
        scaled = self.scale != 1.0
        # (NHWC written by permutes: vmap, the eNTK probe's, takes them)
        if self.channels_last and x.dim() == 4:
            x = x.permute(0, 2, 3, 1).to(self.dtype.dtype, memory_format=torch.contiguous_format, copy=True)
            x = x.permute(0, 3, 1, 2)
        else:
            x = x.to(self.dtype.dtype, copy=scaled)
        return x.mul_(self.scale) if scaled else x


class CReLU(nn.Module):
    """Concatenated ReLU (Shang et al. 2016; Abbas et al. 2023): [relu(x), relu(-x)] on the
    channel/feature axis, so a unit never stops passing gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.relu(), (-x).relu()], dim=1)


class BlockLinear(nn.Linear):
    """Independent linear layers side by side: output block i reads input block i only (a
    block-diagonal product). Only the blocks are stored, stacked: ``weight`` is (sum of the
    output blocks, one input block), so an ``nn.Linear`` of ``in_block`` inputs that initialises,
    trains and is re-initialised exactly as the separate layers would be (PyTorch's default
    initialisation takes its bound from the fan-in, ``in_block``); rows ``rows(i)`` are block i's.
    ``input_mask`` says which weights read a given input unit (ReDo's outgoing weights)."""

    def __init__(self, in_block: int, out_blocks: tuple[int, ...]):
        super().__init__(in_block, sum(out_blocks))
        self.in_block, self.out_blocks = in_block, tuple(out_blocks)

    def rows(self, block: int) -> slice:
        start = sum(self.out_blocks[:block])
        return slice(start, start + self.out_blocks[block])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width, weight, bias = (
            self.in_block,
            self.weight,
            self.bias,
        )  # (read once: a parametrized weight is computed)
        return torch.cat(
            [
                F.linear(x[..., i * width : (i + 1) * width], weight[self.rows(i)], bias[self.rows(i)])
                for i in range(len(self.out_blocks))
            ],
            dim=-1,
        )

    def input_mask(self, units: torch.Tensor) -> torch.Tensor:
        """(weight-shaped) True where a weight reads one of the input ``units`` (a mask over the
        concatenated inputs of every block)."""
        mask = torch.zeros(self.weight.shape, dtype=torch.bool, device=units.device)
        for i in range(len(self.out_blocks)):
            mask[self.rows(i)] = units[i * self.in_block : (i + 1) * self.in_block]
        return mask


class TowerLayerNorm(nn.LayerNorm):
    """LayerNorm over each tower's features apart (``towers`` equal blocks of the last axis)."""

    def __init__(self, towers: int, width: int):
        super().__init__(towers * width)
        self.towers, self.width = towers, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x.unflatten(-1, (self.towers, self.width)), (self.width,), eps=self.eps)
        return normed.flatten(-2) * self.weight + self.bias


def leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.1)  # C-CHAIN's and TRAC's slope


ACTIVATIONS = {"relu": nn.ReLU, "crelu": CReLU, "leaky_relu": leaky_relu}
WIDENING = {"relu": 1, "crelu": 2, "leaky_relu": 1}  # output units per pre-activation unit


class Network(nn.Module):
    def __init__(self, body: nn.Sequential, head: nn.Module):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def acting_body(self) -> nn.Sequential:
        """The layers whose features the output is computed from now, as the probes measure them:
        the body (a network with an injected head says otherwise)."""
        return self.body


def default_arch(obs_shape: tuple) -> str:
    if len(obs_shape) == 3 and obs_shape[1] >= 32:
        return "nature_cnn"
    return "minatar_cnn" if len(obs_shape) == 3 else "mlp"


def build_body(
    obs_shape: tuple,
    arch: str,
    obs_scale: float,
    layer_norm: bool = False,
    activation: str = "relu",
    width_scale: float = 1.0,
    towers: int = 1,
) -> nn.Sequential:
    """``towers`` > 1: that many independent MLPs side by side (their features concatenated)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown network arch '{arch}'; valid: {', '.join(ARCHS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{activation}'; valid: {', '.join(ACTIVATIONS)}")
    if towers > 1 and (arch != "mlp" or activation == "crelu"):
        raise ValueError(
            f"separate towers are built for arch=mlp without crelu, not arch={arch}, {activation}"
        )
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        scale=ToFloat(obs_scale, channels_last=arch == "nature_cnn" and SPEED.channels_last)
    )
    shape = tuple(obs_shape)
    n = 0
    for spec in ARCHS[arch]:
        if spec[0] == "flatten":
            layers["flatten"] = nn.Flatten()
            shape = (int(torch.tensor(shape).prod()),)
            continue
        n += 1
        out = max(1, round(spec[1] * width_scale))
        if spec[0] == "conv":
            _, _, kernel, stride = spec
            patches = stride == 1 and arch == "minatar_cnn" and SPEED.patch_conv  # (nets/fast.py)
            layers[f"conv{n}"] = (
                PatchConv2d(shape[0], out, kernel) if patches else nn.Conv2d(shape[0], out, kernel, stride)
            )
            shape = (out, (shape[1] - kernel) // stride + 1, (shape[2] - kernel) // stride + 1)
        elif towers > 1 and n > 1:  # a tower reads its own features only
            layers[f"fc{n}"] = BlockLinear(shape[0] // towers, (out,) * towers)
            shape = (out * towers,)
        else:  # (the first layer of every tower reads the whole input: one Linear holds them all)
            layers[f"fc{n}"] = nn.Linear(shape[0], out * towers)
            shape = (out * towers,)
        if layer_norm:
            layers[f"norm{n}"] = (
                TowerLayerNorm(towers, shape[0] // towers) if towers > 1 else nn.LayerNorm(shape)
            )
        layers[f"act{n}"] = ACTIVATIONS[activation]()
        shape = (shape[0] * WIDENING[activation], *shape[1:])
    body = nn.Sequential(layers)
    body.towers = towers  # each layer's units are that many equal blocks, one per tower (nets.capture)
    return body


def build_network(
    obs_shape: tuple,
    num_outputs: int,
    arch: str = "auto",
    obs_scale: float = 1.0,
    layer_norm: bool = False,
    activation: str = "relu",
    width_scale: float = 1.0,
    value_bins: int = 1,
    towers: tuple[int, ...] = (),
) -> Network:
    """``value_bins > 1``: the head gives ``value_bins`` logits per output (categorical values).
    ``towers``: the sizes of output groups that each get a network of their own (they sum to
    ``num_outputs``, ``value_bins`` included: the caller counts them); () = one shared body."""
    arch = default_arch(obs_shape) if arch == "auto" else arch
    if towers and sum(towers) != num_outputs * value_bins:
        raise ValueError(f"towers {towers} must add up to the {num_outputs * value_bins} outputs")
    body = build_body(obs_shape, arch, obs_scale, layer_norm, activation, width_scale, max(len(towers), 1))
    with torch.no_grad():
        features = body(torch.zeros(1, *obs_shape)).shape[-1]
    head = (
        BlockLinear(features // len(towers), towers)
        if len(towers) > 1
        else nn.Linear(features, num_outputs * value_bins)
    )
    network = Network(body, head)
    if arch == "nature_cnn" and SPEED.channels_last:  # oneDNN's convolutions want NHWC (nets/fast.py)
        network = network.to(memory_format=torch.channels_last)
    return network


def reinitialised(module: nn.Module) -> nn.Module:
    """A freshly initialised copy of ``module``: same architecture, device and init scheme. The
    weights are drawn on the CPU, from the generator the checkpoints save, then moved: a run on
    CUDA resumes to the same draws, and draws what a CPU run would."""
    device = next(module.parameters(), torch.empty(0)).device
    fresh = copy.deepcopy(module).cpu()
    for m in fresh.modules():
        if hasattr(m, "reset_parameters"):
            reset_parameters(m)
    return fresh.to(device)


def reset_parameters(m: nn.Module) -> None:
    """``m.reset_parameters()``, also for a parametrized module (spectral_norm), whose
    ``reset_parameters`` would initialise a computed copy of the weight and leave the real one:
    there it runs on a view of ``m`` whose parametrized attributes are the trained originals."""
    if parametrize.is_parametrized(m):
        type(m).reset_parameters(_Originals(m))
    else:
        m.reset_parameters()


class _Originals:
    def __init__(self, module: nn.Module):
        self._module = module

    def __getattr__(self, name: str):
        if name in self._module.parametrizations:
            return self._module.parametrizations[name].original
        return getattr(self._module, name)


@contextlib.contextmanager
def eval_mode(network: nn.Module):
    """Evaluation mode for a measurement or an action, each module's own mode restored after: a
    spectral-normalised layer then reads its power-iteration vectors without updating them, so
    measuring leaves the network as it was (``network.train()`` would also switch on modules
    that were in evaluation mode, such as DQN's target network)."""
    modes = [(module, module.training) for module in network.modules()]
    network.eval()
    try:
        yield network
    finally:
        for module, mode in modes:
            module.training = mode
