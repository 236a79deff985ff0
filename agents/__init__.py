"""Agent registry. An agent is one module here that decorates its class with ``@register``;
every module in this package is imported on start, so a new file is all it takes."""
from __future__ import annotations

import importlib
import pkgutil

AGENTS: dict[str, type] = {}


def register(name: str):
    """Class decorator: the agent ``name``, checked against the protocol (agents/base.py)."""
    def add(cls):
        from agents.base import check_class

        check_class(cls)
        cls.name = name
        AGENTS[name] = cls
        return cls

    return add


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
