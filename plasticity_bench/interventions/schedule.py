"""Interventions that act now and then (redo, reset, shrink_perturb)."""

from __future__ import annotations

from plasticity_bench.core.intervals import crossed
from plasticity_bench.interventions.base import Intervention


class Scheduled(Intervention):
    """An intervention that acts now and then: ``apply(agent) -> metrics`` runs each time the
    count crosses a multiple of ``cfg.interval``, where the count is the agent step (``unit =
    "steps"``) or the gradient updates so far (``unit = "updates"``: one per ``after_update``
    call); or, with ``cfg.at_shift``, at every task switch of a task sequence (``on_shift``)
    and never on the interval. Several updates can share one agent step: it fires once."""

    unit = "steps"

    def __init__(self, cfg):
        self.cfg, self.previous, self.updates = cfg, 0, 0

    def after_update(self, agent, step: int) -> dict:
        self.updates += 1
        count = self.updates if self.unit == "updates" else step
        previous, self.previous = self.previous, count
        if self.cfg.at_shift or not crossed(previous, count, self.cfg.interval):
            return {}
        return self.apply(agent)

    def on_shift(self, agent) -> dict:
        return self.apply(agent) if self.cfg.at_shift else {}

    def state_dict(self) -> dict:
        return {"previous": self.previous, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if "previous" in state:
            self.previous, self.updates = state["previous"], state["updates"]
        else:  # a checkpoint of an older version: the last multiple it acted at
            self.previous, self.updates = state["last"] * self.cfg.interval, 0
