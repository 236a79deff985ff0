"""Intervention registry and composition.

An intervention is a small object with any of these optional hooks, called in order:
``build(factory) -> factory`` (change the architecture), ``loss(network, loss) -> loss``,
``gradients(network)`` (after backward, before clipping and the step: add a penalty's gradient
straight to the parameters' gradients, as ``l2`` and ``l2init`` do), ``after_update(agent, step)
-> dict`` (after every gradient update; acts at intervals and returns metrics to log),
``on_shift(agent) -> dict`` (at a task switch of a task sequence).
Names compose with ``_``: ``ln_l2`` = ``ln`` then ``l2``; ``none`` is the baseline. A family
lists the families it cannot be composed with in ``incompatible`` (checked both ways).
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

from plasticity_bench.core import ranges
from plasticity_bench.nets.values import ScalarValues

INTERVENTIONS: dict[str, type] = {}


def register(name: str):
    def add(cls):
        cls.name = name
        INTERVENTIONS[name] = cls
        return cls

    return add


def params_schema() -> type:
    """One dataclass with a field per family, holding that family's typed defaults."""
    fields = [(f, cls.Config, dataclasses.field(default_factory=cls.Config)) for f, cls in sorted(INTERVENTIONS.items())]
    return dataclasses.make_dataclass("InterventionParams", fields)


def split_name(name: str) -> list[str]:
    """``"ln_l2"`` -> ``["ln", "l2"]``; family names may contain ``_`` (longest match wins)."""
    if name == "none":
        return []
    if "" in name.split("_"):  # "ln_", "_l2", "ln__l2": a composition names only registered parts
        valid = ", ".join(["none", *sorted(INTERVENTIONS)])
        raise ValueError(f"unknown intervention '{name}' (an empty part); valid: {valid} (or an a_b composition)")
    parts, rest = [], name
    while rest:
        match = max((f for f in INTERVENTIONS if rest == f or rest.startswith(f + "_")), key=len, default=None)
        if match is None:
            valid = ", ".join(["none", *sorted(INTERVENTIONS)])
            raise ValueError(f"unknown intervention '{name}'; valid: {valid} (or an a_b composition)")
        parts.append(match)
        rest = rest[len(match) + 1:]
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            if a == b or b in getattr(INTERVENTIONS[a], "incompatible", ()) or a in getattr(INTERVENTIONS[b], "incompatible", ()):
                why = "appears twice" if a == b else "cannot be composed"
                raise ValueError(f"intervention '{name}': {a} and {b} {why}; see the README's interventions table")
    return parts


class Composition:
    """An ordered list of interventions acting as one."""

    def __init__(self, name: str, params: Any = None):
        """``params[family]`` overrides that family's typed defaults (its ``Config``)."""
        self.name = name
        params = params or {}
        self.parts = []
        for family in split_name(name):
            cfg = INTERVENTIONS[family].Config(**dict(params.get(family, {})))
            ranges.check(cfg, type(cfg), f"interventions.{family}.")  # each field's declared range
            self.parts.append(INTERVENTIONS[family](cfg))

    def build(self, factory: Callable):
        for part in self.parts:
            if hasattr(part, "build"):
                factory = part.build(factory)
        return factory()

    def loss(self, network, loss):
        for part in self.parts:
            if hasattr(part, "loss"):
                loss = part.loss(network, loss)
        return loss

    def gradients(self, network) -> None:
        """After backward, before clipping and the step (``agents.optim.gradient_step`` calls it)."""
        for part in self.parts:
            if hasattr(part, "gradients"):
                part.gradients(network)

    def value_head(self):
        """The part that turns network outputs into values (two_hot, hl_gauss), or the default:
        one scalar output per action, regressed with the agent's own loss."""
        heads = [p for p in self.parts if hasattr(p, "q_values")]
        return heads[0] if heads else ScalarValues()

    def after_update(self, agent, step: int) -> dict:
        metrics = {}
        for part in self.parts:
            if hasattr(part, "after_update"):
                metrics.update(part.after_update(agent, step) or {})
        return metrics

    def on_shift(self, agent) -> dict:
        """At a task switch: the parts configured to act there (``at_shift``) act."""
        metrics = {}
        for part in self.parts:
            if hasattr(part, "on_shift"):
                metrics.update(part.on_shift(agent) or {})
        return metrics

    def acts_at_shifts(self) -> list[str]:
        """Families of this composition configured to act at task switches."""
        return [p.name for p in self.parts if getattr(p.cfg, "at_shift", False)]

    def state_dict(self) -> dict:
        return {p.name: p.state_dict() for p in self.parts if hasattr(p, "state_dict")}

    def load_state_dict(self, state: dict) -> None:
        for p in self.parts:
            if hasattr(p, "load_state_dict"):
                p.load_state_dict(state[p.name])


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
