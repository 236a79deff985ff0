"""The empirical NTK on a small batch: the Gram matrix of per-example parameter gradients.

A network that lost plasticity has an ill-conditioned, low-rank eNTK and more gradient
interference between inputs (Lyle et al. 2024). The scalar per example is the mean output.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from agents.networks import eval_mode


def per_example_gradients(network: nn.Module, inputs: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """(batch, parameters) matrix of d mean_output(x_i) / d theta."""
    params = {k: v.detach() for k, v in network.named_parameters()}
    buffers = {k: v.detach() for k, v in network.named_buffers()}

    def mean_output(p, x):
        return functional_call(network, (p, buffers), (x[None],)).mean()

    rows = []
    with eval_mode(network):  # a training-mode spectral_norm would write its buffers inside vmap
        for start in range(0, len(inputs), chunk):  # chunks bound the memory of vmap's activations
            grads = vmap(grad(mean_output), in_dims=(None, 0))(params, inputs[start:start + chunk])
            rows.append(torch.cat([g.flatten(1) for g in grads.values()], dim=1))
    return torch.cat(rows)


def entk_gram(network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    jacobian = per_example_gradients(network, inputs).double()
    return jacobian @ jacobian.T


def entk_diagnostics(gram: torch.Tensor) -> dict[str, float]:
    """Condition number and numerical rank of the Gram, and the mean off-diagonal cosine.

    The rank tolerance is that of float32 gradients (largest eigenvalue x n x eps32); the
    smallest eigenvalue is floored at it, so a rank-deficient Gram reads a finite, large
    condition number (about 1 / (n x eps32)) instead of inf."""
    n = gram.shape[0]
    eigenvalues = torch.linalg.eigvalsh(gram)
    largest = float(eigenvalues[-1])
    tolerance = largest * n * torch.finfo(torch.float32).eps
    norms = gram.diagonal().clamp_min(1e-30).sqrt()
    cosine = gram / norms[:, None] / norms[None, :]
    off_diagonal = cosine[~torch.eye(n, dtype=torch.bool, device=gram.device)]
    return {
        "entk_condition": largest / max(float(eigenvalues[0]), tolerance) if largest > 0 else float("nan"),
        "entk_rank": float((eigenvalues > tolerance).sum()) if largest > 0 else 0.0,
        "grad_cosine": float(off_diagonal.mean()) if n > 1 else float("nan"),
    }
