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
        # One foreach kernel per operation over all parameters: the per-parameter Python loop
        # was about a fifth of a MinAtar update (cProfile: 9 ops x 6 small tensors of launch overhead).
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            for p in params:
                if not self.state[p]:
                    self.state[p].update(step=torch.tensor(0.0), square_avg=torch.zeros_like(p),
                                         grad_avg=torch.zeros_like(p))
            states = [self.state[p] for p in params]
            grads = [p.grad for p in params]
            square_avg, grad_avg = [s["square_avg"] for s in states], [s["grad_avg"] for s in states]
            torch._foreach_add_([s["step"] for s in states], 1)
            torch._foreach_mul_(square_avg, alpha)
            torch._foreach_addcmul_(square_avg, grads, grads, value=1 - alpha)
            torch._foreach_lerp_(grad_avg, grads, 1 - alpha)
            denom = torch._foreach_addcmul(square_avg, grad_avg, grad_avg, value=-1)
            # Clamp at a floor whose square root vanishes beside eps instead of at 0: the result is
            # the same to the bit, and torch's sqrt is 2-3x slower on a tensor with zeros in it
            # (parameters whose gradient is always 0, e.g. behind a dead unit): a tenth of a MinAtar update.
            torch._foreach_clamp_min_(denom, sqrt_floor(eps, params[0].dtype))
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, grads, denom, value=-lr)


def sqrt_floor(eps: float, dtype: torch.dtype) -> float:
    """The largest ``v`` (up to a power of 2) with ``sqrt(v) + eps == eps`` in ``dtype``: sqrt(v) is
    under half an ulp of eps. 0 where that floor would be subnormal."""
    info = torch.finfo(dtype)
    floor = (eps * info.eps / 8) ** 2
    return floor if floor >= info.tiny else 0.0
