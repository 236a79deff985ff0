"""Optimizer pieces the agents share: one gradient step with clipping, and a centred RMSProp
that stays finite.

Same update as ``torch.optim.RMSprop(centered=True)`` (the MinAtar paper's optimizer):
``theta -= lr * g / (sqrt(E[g^2] - E[g]^2) + eps)``. Torch does not clamp the variance; when a
parameter's gradient is (nearly) constant, e.g. only an L2 term reaches it, rounding makes it
slightly negative and the square root NaN. Here it is clamped. State keys match torch's.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from plasticity_bench.nets.fast import SPEED


def gradient_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    max_grad_norm: float = 0.0,
    after_backward: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Backpropagate ``loss``, run ``after_backward`` (the interventions' gradient terms:
    ``lambda: interventions.gradients(network)``) and step; returns the gradient norm before
    clipping (clipped to ``max_grad_norm`` when > 0). Norm and clipping cover the optimizer's
    parameters, not the network's: an intervention may have frozen some (plasticity_injection)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:
        after_backward()
    if max_grad_norm <= 0 and isinstance(optimizer, CenteredRMSprop):
        return optimizer.step_and_norm()  # the norm from the step's own pass over the gradients
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
        self.step_and_norm()

    @torch.no_grad()
    def step_and_norm(self) -> torch.Tensor:
        """One step; returns the norm of the gradients it applied, summed in the same pass (a
        separate norm over them cost a third of the step). Not hooked: optimizer hooks and the
        profiler's step label come with ``step``."""
        squared = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p].update(
                        step=torch.tensor(0.0), square_avg=torch.zeros_like(p), grad_avg=torch.zeros_like(p)
                    )
            states = [self.state[p] for p in params]
            update = _fused_update if fused_update_works(params) else _foreach_update
            squared.append(
                update(
                    params,
                    [p.grad for p in params],
                    [s["square_avg"] for s in states],
                    [s["grad_avg"] for s in states],
                    [s["step"] for s in states],
                    group["lr"],
                    group["alpha"],
                    group["eps"],
                    sqrt_floor(group["eps"], params[0].dtype),
                )
            )
        return (
            squared[0] if len(squared) == 1 else torch.stack(squared).sum() if squared else torch.zeros(())
        ).sqrt()


def _foreach_update(
    params, grads, square_avg, grad_avg, steps, lr: float, alpha: float, eps: float, floor: float
) -> torch.Tensor:
    """The update as one foreach kernel per operation over all parameters (eager: CUDA, and
    the CPU where the compiled update is not available). Returns the gradients' squared norm."""
    squared = torch.stack(torch._foreach_norm(grads)).square().sum()
    torch._foreach_add_(steps, 1)
    torch._foreach_mul_(square_avg, alpha)
    torch._foreach_addcmul_(square_avg, grads, grads, value=1 - alpha)
    torch._foreach_lerp_(grad_avg, grads, 1 - alpha)
    denom = torch._foreach_addcmul(square_avg, grad_avg, grad_avg, value=-1)
    # Clamp at a floor whose square root vanishes beside eps instead of at 0: the result is
    # the same to the bit, and torch's sqrt is 2-3x slower on a tensor with zeros in it
    # (parameters whose gradient is always 0, e.g. behind a dead unit).
    torch._foreach_clamp_min_(denom, floor)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, grads, denom, value=-lr)
    return squared


def _per_tensor_update(params, grads, square_avg, grad_avg, steps, hyper: torch.Tensor) -> torch.Tensor:
    """The same update written per tensor, for ``torch.compile``: each tensor's chain becomes one
    loop that reads and writes its four tensors once, where the eager ops make eight passes.
    ``hyper`` holds lr, alpha, 1 - alpha, eps and the floor as a tensor, not as constants: a new
    learning rate (a sweep in one worker process) does not compile again."""
    lr, alpha, one_minus_alpha, eps, floor = hyper.unbind()
    squared = []
    for p, g, s, a, n in zip(params, grads, square_avg, grad_avg, steps):
        squared.append(g.pow(2).sum())
        n.add_(1)
        s.mul_(alpha).add_(g * g * one_minus_alpha)
        a.mul_(alpha).add_(g * one_minus_alpha)
        p.sub_(lr * g / ((s - a * a).clamp_min(floor).sqrt() + eps))
    return torch.stack(squared).sum()


_compiled = {"update": None, "works": None}  # built at the first CPU step (importing dynamo takes a second)
# (lr, alpha, eps, floor, dtype) -> the tensor the compiled update reads
_hyper: dict[tuple, torch.Tensor] = {}


def fused_update_works(params: list[torch.Tensor]) -> bool:
    """Whether the compiled update runs: the speed path is on (``speed.compiled_rmsprop``, nets/fast.py),
    CPU tensors (on CUDA the foreach kernels are fast), and ``torch.compile`` with a C++ compiler on
    this machine (known after the first step)."""
    return SPEED.compiled_rmsprop and _compiled["works"] is not False and params[0].device.type == "cpu"


def _fused_update(
    params, grads, square_avg, grad_avg, steps, lr: float, alpha: float, eps: float, floor: float
) -> torch.Tensor:
    if _compiled["update"] is None:
        # one compilation per set of parameter shapes: a process that trains many networks (the
        # tests, a sweep's worker) stays compiled instead of failing at torch's default limits
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 1024)
        torch._dynamo.config.accumulated_recompile_limit = max(
            torch._dynamo.config.accumulated_recompile_limit, 4096
        )
        # (no size asserts: dynamo's guards check every tensor's size and stride before the call,
        # and inductor's asserts would check them again at every step)
        _compiled["update"] = torch.compile(
            _per_tensor_update, fullgraph=True, dynamic=False, options={"size_asserts": False}
        )
    if _compiled["works"] is None:  # the first step compiles: say so, or the run seems to hang
        print(
            "compiling the centred RMSProp step for this machine (once per process, about 20-30 s)",
            flush=True,
        )
    key = (lr, alpha, eps, floor, params[0].dtype)
    if key not in _hyper:
        _hyper[key] = torch.tensor([lr, alpha, 1 - alpha, eps, floor], dtype=params[0].dtype)
    try:  # a failed compilation raises before any tensor is written
        squared = _compiled["update"](params, grads, square_avg, grad_avg, steps, _hyper[key])
    except Exception as error:  # no C++ compiler, an unsupported platform...: eager from here on
        _compiled["works"] = False
        first_line = str(error).splitlines()[0] if str(error) else ""
        warnings.warn(
            f"torch.compile could not build the fused centred RMSProp update ({type(error).__name__}: "
            f"{first_line}); using eager foreach ops, 2-3x slower, whose rounding differs (a run "
            "resumed here will not repeat an uninterrupted one byte for byte)",
            stacklevel=3,
        )
        return _foreach_update(params, grads, square_avg, grad_avg, steps, lr, alpha, eps, floor)
    _compiled["works"] = True
    return squared


def sqrt_floor(eps: float, dtype: torch.dtype) -> float:
    """The largest ``v`` (up to a power of 2) with ``sqrt(v) + eps == eps`` in ``dtype``: sqrt(v) is
    under half an ulp of eps. 0 where that floor would be subnormal."""
    info = torch.finfo(dtype)
    floor = (eps * info.eps / 8) ** 2
    return floor if floor >= info.tiny else 0.0
