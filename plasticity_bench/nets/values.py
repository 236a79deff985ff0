"""Value heads: how a network's outputs become values, and the TD loss each implies.

Both give ``expected(outputs)``, the (batch, actions) values, and ``loss(outputs, target,
actions)``; the learners call them without asking which head they have. ``ScalarValues`` (the
default): one output per action is Q(s, a), regressed with the learner's own loss.
``CategoricalValues`` (the target-scale mechanism of Lyle et al. 2024; used by the ``two_hot``
and ``hl_gauss`` interventions): the network gives ``bins`` logits per action over a fixed
support, Q is the expectation, and the loss is the cross entropy to a distribution placed on
the support at the scalar TD target (two-hot, or HL-Gauss: Farebrother et al. 2024, "Stop
Regressing")."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


class ScalarValues:
    """Plain value outputs: the value of action a is output a, regressed on the target with the
    learner's own loss (``regression``: MSE, Huber, PPO's clipped squared error)."""

    def expected(self, outputs: torch.Tensor) -> torch.Tensor:
        """(batch, actions) values from the outputs: the outputs themselves."""
        return outputs

    def loss(
        self,
        outputs: torch.Tensor,
        target: torch.Tensor,
        actions: torch.Tensor | None = None,
        regression: Callable = F.mse_loss,
    ) -> torch.Tensor:
        """``regression(value, target)`` on the value of the actions taken (of the one output
        when ``actions`` is None: a critic)."""
        value = outputs[:, 0] if actions is None else outputs.gather(1, actions[:, None]).squeeze(1)
        return regression(value, target)

    def target_metrics(self, target) -> dict:
        """Nothing to report: a scalar output takes any target."""
        return {}


def support(v_min: float, v_max: float, bins: int, device=None) -> torch.Tensor:
    return torch.linspace(v_min, v_max, bins, device=device)


def two_hot(values: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """(B,) scalars -> (B, bins): weight on the two nearest atoms, exact expectation inside
    [atoms[0], atoms[-1]]; values outside are clamped to the range."""
    values = values.clamp(atoms[0], atoms[-1])
    position = (values - atoms[0]) / (atoms[1] - atoms[0])
    low = position.floor().long().clamp(max=len(atoms) - 2)
    upper_weight = position - low
    probs = torch.zeros(len(values), len(atoms), device=values.device)
    # out of place: under a population's vmap (runner/stacked.py) the zeros are one tensor and
    # the weights are K, which an in-place scatter cannot write
    probs = probs.scatter(1, low[:, None], (1 - upper_weight)[:, None])
    return probs.scatter_add(1, (low + 1)[:, None], upper_weight[:, None])


def hl_gauss(values: torch.Tensor, atoms: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B,) scalars -> (B, bins): a Normal(value, sigma) integrated over each atom's bin, the
    mass outside the support renormalised away. Values are clamped to the support first: in
    float32 a value some 5.5 sigma past an edge has no mass left in any bin, and its target would
    be all zeros (zero loss, zero gradient)."""
    values = values.clamp(atoms[0], atoms[-1])
    width = atoms[1] - atoms[0]
    edges = torch.cat([atoms - width / 2, (atoms[-1] + width / 2)[None]])
    cdf = torch.special.ndtr((edges[None, :] - values[:, None]) / sigma)
    mass = cdf[:, 1:] - cdf[:, :-1]
    return mass / mass.sum(1, keepdim=True).clamp_min(1e-12)


class CategoricalValues:
    """``bins`` logits per action over a fixed support [v_min, v_max]; ``project`` places a scalar
    target on the support (``two_hot`` or ``hl_gauss``)."""

    def __init__(self, bins: int, v_min: float, v_max: float, project: Callable):
        self.bins, self.v_min, self.v_max, self.project = bins, v_min, v_max, project

    def _atoms(self, like: torch.Tensor) -> torch.Tensor:
        return support(self.v_min, self.v_max, self.bins, like.device)

    def expected(self, outputs: torch.Tensor) -> torch.Tensor:
        """(batch, actions) values: the expectation of each action's distribution."""
        logits = outputs.view(len(outputs), -1, self.bins)
        return (logits.softmax(-1) * self._atoms(outputs)).sum(-1)

    def loss(
        self,
        outputs: torch.Tensor,
        target: torch.Tensor,
        actions: torch.Tensor | None = None,
        regression: Callable | None = None,
    ) -> torch.Tensor:
        """Cross entropy of the actions taken (the one output group when ``actions`` is None) to
        the projected target; ``regression``, the learner's scalar loss, is not used."""
        logits = outputs.view(len(outputs), -1, self.bins)
        logits = (
            logits[:, 0]
            if actions is None
            else logits[torch.arange(len(outputs), device=outputs.device), actions]
        )
        return (
            -(self.project(target.detach(), self._atoms(outputs)) * F.log_softmax(logits, -1)).sum(-1).mean()
        )

    def target_metrics(self, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training metric: the fraction of targets outside the support (clamped to its edge)."""
        outside = (target < self.v_min) | (target > self.v_max)
        return {"target_clamped_frac": outside.float().mean()}
