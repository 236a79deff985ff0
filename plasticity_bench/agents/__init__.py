"""Agent registry. An agent is one module here that decorates its class with ``@register``;
every module in this package is imported on start, so a new file is all it takes."""

from __future__ import annotations

import importlib
import pkgutil

AGENTS: dict[str, type] = {}
BROKEN: dict[str, str] = {}  # module name -> why it failed to import (its agent is then not available)


def register(name: str):
    """Class decorator: the agent ``name``, checked against the protocol (agents/base.py)."""

    def add(cls):
        from plasticity_bench.agents.base import check_class

        check_class(cls)
        cls.name = name
        AGENTS[name] = cls
        return cls

    return add


def broken_note() -> str:
    """'' or one clause naming the agent modules that failed to import, and why."""
    return "".join(f"; agents/{name}.py failed to import ({why})" for name, why in sorted(BROKEN.items()))


for _module in pkgutil.iter_modules(__path__):
    try:  # one broken file must not take the other agents down with it
        importlib.import_module(f"{__name__}.{_module.name}")
    except Exception as error:  # noqa: BLE001 (reported when an agent is asked for: runner.config)
        if _module.name in ("base",):
            raise
        BROKEN[_module.name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        for _name in [n for n, c in AGENTS.items() if c.__module__ == f"{__name__}.{_module.name}"]:
            del AGENTS[_name]  # (registered before the failure: half a module is not an agent)
