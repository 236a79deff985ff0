"""Value heads: how a network's outputs become values, and the TD loss each implies.

``ScalarValues`` (the default): one output per action is Q(s, a), regressed with the agent's own
loss. ``CategoricalValues`` (the target-scale mechanism of Lyle et al. 2024; used by the
``two_hot`` and ``hl_gauss`` interventions): the network gives ``bins`` logits per action over a
fixed support, Q is the expectation, and the loss is the cross entropy to a distribution placed
on the support at the scalar TD target (two-hot, or HL-Gauss: Farebrother et al. 2024, "Stop
Regressing")."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


class ScalarValues:
    """Plain value outputs: Q(s, a) is output a; the TD loss is the agent's (MSE or Huber)."""

    def q_values(self, outputs, num_actions: int):
        return outputs

    def target_metrics(self, target) -> dict:
        """Nothing to report: a scalar output takes any target."""
        return {}

    def td_loss(self, outputs, actions, target, loss_fn):
        """(loss, Q of the actions taken)."""
        q = outputs.gather(1, actions[:, None]).squeeze(1)
        return loss_fn(q, target), q


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
    probs.scatter_(1, low[:, None], (1 - upper_weight)[:, None])
    probs.scatter_add_(1, (low + 1)[:, None], upper_weight[:, None])
    return probs


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
    """The value-head hooks: ``build`` asks the network for ``bins`` logits per action."""

    def __init__(self, cfg, project):
        self.cfg, self.project = cfg, project
        if cfg.bins < 2 or cfg.v_max <= cfg.v_min:
            raise ValueError(f"interventions.{self.name}: need bins >= 2 and v_max > v_min, got {cfg.bins}, [{cfg.v_min}, {cfg.v_max}]")

    def build(self, factory):
        return functools.partial(factory, value_bins=self.cfg.bins)

    def _atoms(self, like: torch.Tensor) -> torch.Tensor:
        return support(self.cfg.v_min, self.cfg.v_max, self.cfg.bins, like.device)

    def q_values(self, outputs: torch.Tensor, num_actions: int) -> torch.Tensor:
        logits = outputs.view(len(outputs), num_actions, self.cfg.bins)
        return (logits.softmax(-1) * self._atoms(outputs)).sum(-1)

    def target_metrics(self, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training metric: the fraction of TD targets outside the support (clamped to its edge)."""
        outside = (target < self.cfg.v_min) | (target > self.cfg.v_max)
        return {"target_clamped_frac": outside.float().mean()}

    def td_loss(self, outputs, actions, target, loss_fn):
        """Cross entropy to the projected target (``loss_fn``, the agent's scalar loss, is not
        used); returns the expected Q of the actions taken beside it."""
        logits = outputs.view(len(outputs), -1, self.cfg.bins)[torch.arange(len(outputs), device=outputs.device), actions]
        atoms = self._atoms(outputs)
        loss = -(self.project(target.detach(), atoms) * F.log_softmax(logits, -1)).sum(-1).mean()
        return loss, (logits.softmax(-1) * atoms).sum(-1)
