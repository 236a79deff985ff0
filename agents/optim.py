"""Optimizer pieces the agents share: one gradient step with clipping, and a centred RMSProp
that stays finite.

Same update as ``torch.optim.RMSprop(centered=True)`` (the MinAtar paper's optimizer):
``theta -= lr * g / (sqrt(E[g^2] - E[g]^2) + eps)``. Torch does not clamp the variance; when a
parameter's gradient is (nearly) constant, e.g. only an L2 term reaches it, rounding makes it
slightly negative and the square root NaN. Here it is clamped at 0. State keys match torch's.
"""
from __future__ import annotations

import torch


def gradient_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float = 0.0) -> torch.Tensor:
    """Backpropagate ``loss`` and step; returns the gradient norm before clipping (clipped to
    ``max_grad_norm`` when > 0). Norm and clipping cover the optimizer's parameters, not the
    network's: an intervention may have frozen some (plasticity_injection)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trained = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if max_grad_norm > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(trained, max_grad_norm)
    else:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in trained])
    optimizer.step()
    return grad_norm.detach()


class CenteredRMSprop(torch.optim.Optimizer):
    def __init__(self, params, lr: float, alpha: float = 0.95, eps: float = 0.01):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                square_avg, grad_avg, grad = state["square_avg"], state["grad_avg"], p.grad
                square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
                grad_avg.lerp_(grad, 1 - alpha)
                denom = square_avg.addcmul(grad_avg, grad_avg, value=-1).clamp_min_(0).sqrt_().add_(eps)
                p.addcdiv_(grad, denom, value=-lr)
