"""The empirical NTK on a small batch: the Gram matrix of per-example parameter gradients.

A network that lost plasticity has an ill-conditioned, low-rank eNTK and more gradient
interference between inputs (Lyle et al. 2024). The scalar differentiated per example is the
agent's own prediction (``agent.prediction``: Q of action 0, the expected Q of a categorical
head, PPO's value), not the mean of all outputs, whose bin-logit or policy-logit directions the
agent never reads. Gradients and Gram are computed in double precision (docs/science.md, "eNTK").
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from plasticity_bench.nets.networks import eval_mode

# Eigenvalues below this fraction of the largest count as zero, and the condition number is
# capped at its inverse. Fixed, so the cap does not move with the batch size; in double precision
# the rounding noise of the Gram is about n x 1e-16 of its largest eigenvalue, far below it.
RELATIVE_FLOOR = 1e-12


def mean_output(outputs: torch.Tensor) -> torch.Tensor:
    return outputs.mean(1)


def per_example_gradients(
    network: nn.Module, inputs: torch.Tensor, prediction: Callable = mean_output, chunk: int = 16
) -> torch.Tensor:
    """(batch, parameters) matrix of d prediction(x_i) / d theta, in float64.

    ``prediction`` maps the network's outputs (batch, outputs) to one scalar per example."""
    as_double = lambda t: t.detach().double() if t.is_floating_point() else t.detach()  # noqa: E731
    params = {k: as_double(v) for k, v in network.named_parameters()}
    buffers = {k: as_double(v) for k, v in network.named_buffers()}

    def scalar(p, x):
        return prediction(functional_call(network, (p, buffers), (x[None],)))[0]

    inputs = as_double(inputs)  # pixels and grids stay integer: the network's ToFloat converts them
    # filled in place: one (batch x parameters) float64 matrix, 0.9 GB for 64 Atari inputs
    jacobian = torch.empty(
        len(inputs), sum(p.numel() for p in params.values()), dtype=torch.float64, device=inputs.device
    )
    with eval_mode(network):  # a training-mode spectral_norm would write its buffers inside vmap
        for start in range(0, len(inputs), chunk):  # chunks bound the memory of vmap's activations
            grads = vmap(grad(scalar), in_dims=(None, 0))(params, inputs[start : start + chunk])
            torch.cat([g.flatten(1) for g in grads.values()], dim=1, out=jacobian[start : start + chunk])
    return jacobian


def entk_gram(network: nn.Module, inputs: torch.Tensor, prediction: Callable = mean_output) -> torch.Tensor:
    jacobian = per_example_gradients(network, inputs, prediction)
    return jacobian @ jacobian.T


def entk_diagnostics(gram: torch.Tensor) -> dict[str, float]:
    """Condition number and numerical rank of the Gram, and the mean off-diagonal cosine.

    Eigenvalues at or below ``RELATIVE_FLOOR`` x the largest count as zero for the rank, and the
    smallest is floored there: a rank-deficient Gram reads 1 / RELATIVE_FLOOR (1e12), whatever
    the batch size, instead of inf."""
    n = gram.shape[0]
    eigenvalues = torch.linalg.eigvalsh(gram.double())
    largest = float(eigenvalues[-1])
    tolerance = largest * RELATIVE_FLOOR
    norms = gram.diagonal().clamp_min(1e-30).sqrt()
    cosine = gram / norms[:, None] / norms[None, :]
    off_diagonal = cosine[~torch.eye(n, dtype=torch.bool, device=gram.device)]
    return {
        "entk_condition": largest / max(float(eigenvalues[0]), tolerance) if largest > 0 else float("nan"),
        "entk_rank": float((eigenvalues > tolerance).sum()) if largest > 0 else 0.0,
        "grad_cosine": float(off_diagonal.mean()) if n > 1 else float("nan"),
    }
