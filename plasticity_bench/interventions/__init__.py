"""Intervention registry and composition.

A family is an ``Intervention`` (``interventions/base.py``: every hook a no-op) registered under
a name. Names compose with ``_``: ``ln_l2`` = ``ln`` then ``l2``; ``none`` is the baseline. A
family lists the families it cannot be composed with in ``incompatible`` (checked both ways).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

from plasticity_bench.core import ranges
from plasticity_bench.interventions.base import Intervention
from plasticity_bench.nets.values import ScalarValues

INTERVENTIONS: dict[str, type] = {}


def register(name: str):
    def add(cls):
        if not issubclass(cls, Intervention):
            raise TypeError(
                f"intervention '{name}': {cls.__name__} must derive from interventions.Intervention"
            )
        cls.name = name
        INTERVENTIONS[name] = cls
        return cls

    return add


def params_schema() -> type:
    """One dataclass with a field per family, holding that family's typed defaults."""
    fields = [
        (f, cls.Config, dataclasses.field(default_factory=cls.Config))
        for f, cls in sorted(INTERVENTIONS.items())
    ]
    return dataclasses.make_dataclass("InterventionParams", fields)


def split_name(name: str) -> list[str]:
    """``"ln_l2"`` -> ``["ln", "l2"]``; family names may contain ``_`` (longest match wins)."""
    if name == "none":
        return []
    if "" in name.split("_"):  # "ln_", "_l2", "ln__l2": a composition names only registered parts
        valid = ", ".join(["none", *sorted(INTERVENTIONS)])
        raise ValueError(
            f"unknown intervention '{name}' (an empty part); valid: {valid} (or an a_b composition)"
        )
    parts, rest = [], name
    while rest:
        match = max(
            (f for f in INTERVENTIONS if rest == f or rest.startswith(f + "_")), key=len, default=None
        )
        if match is None:
            valid = ", ".join(["none", *sorted(INTERVENTIONS)])
            raise ValueError(f"unknown intervention '{name}'; valid: {valid} (or an a_b composition)")
        parts.append(match)
        rest = rest[len(match) + 1 :]
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            if a == b or b in INTERVENTIONS[a].incompatible or a in INTERVENTIONS[b].incompatible:
                why = f"{a} appears twice" if a == b else f"{a} and {b} cannot be composed"
                raise ValueError(f"intervention '{name}': {why}; see docs/reference.md, Interventions")
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
            factory = part.build(factory)
        return factory()

    def loss(self, network, loss):
        for part in self.parts:
            loss = part.loss(network, loss)
        return loss

    def gradients(self, network) -> None:
        """After backward, before clipping and the step (``nets.learner.Learner.train_step``)."""
        for part in self.parts:
            part.gradients(network)

    def value_head(self):
        """The part's value head that turns network outputs into values (two_hot, hl_gauss), or
        the default: one scalar output per action, regressed with the learner's own loss."""
        heads = [h for h in (p.value_head() for p in self.parts) if h is not None]
        return heads[0] if heads else ScalarValues()

    def after_update(self, learner, step: int) -> dict:
        metrics = {}
        for part in self.parts:
            metrics.update(part.after_update(learner, step))
        return metrics

    def on_shift(self, learner) -> dict:
        """At a task switch: the parts configured to act there (``at_shift``) act."""
        metrics = {}
        for part in self.parts:
            metrics.update(part.on_shift(learner))
        return metrics

    def restarted(self, network) -> None:
        for part in self.parts:
            part.restarted(network)

    def unstackable(self) -> list[str]:
        """Families of this composition a population's stacked kernel cannot take: a network that
        cannot run under vmap (``Intervention.stacks``), or a loss term (the kernel differentiates
        the agent's loss alone)."""
        return [p.name for p in self.parts if not p.stacks or type(p).loss is not Intervention.loss]

    def acts_at_shifts(self) -> list[str]:
        """Families of this composition configured to act at task switches."""
        return [p.name for p in self.parts if getattr(p.cfg, "at_shift", False)]

    def state_dict(self) -> dict:
        return {p.name: state for p in self.parts if (state := p.state_dict())}

    def load_state_dict(self, state: dict) -> None:
        for p in self.parts:
            if p.name in state:
                p.load_state_dict(state[p.name])


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
