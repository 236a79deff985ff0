"""Valid ranges of config values, declared once per field, next to its default:

    lr: float = ranged(1e-4, gt=0)
    \"\"\"Learning rate.\"\"\"

``ranged`` is a ``dataclasses.field`` whose metadata holds a ``Range``; OmegaConf and Hydra
read the default as usual. ``check(node, schema, prefix)`` walks a schema's fields and raises a
one-line ``ValueError`` naming the key, the value and its range for the first value outside it.
The runner, the shifts suite and a sweep's ``--check`` call it when a config is composed,
before any run directory exists.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    integer: bool = False
    """Only whole numbers (a run-level key without a typed schema: seed, total_steps, ...)."""

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value) or (self.integer and not isinstance(value, int)):
            return False  # inf and nan are never a setting
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def __str__(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        return ("a whole number " if self.integer else "") + self._bounds()

    def _bounds(self) -> str:
        if self.ge is None and self.gt is None and self.le is None and self.lt is None:
            return "any finite number"
        low = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None
        high = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        return f"{'<=' if self.le is not None else '<'} {high[:-1]}"


def ranged(default: Any, **bounds) -> Any:
    """A dataclass field with ``default`` whose valid values are ``Range(**bounds)``."""
    return dataclasses.field(default=default, metadata={"range": Range(**bounds)})


def ranges(schema: type) -> dict[str, Range]:
    """Field name -> Range of the fields of ``schema`` that declare one."""
    return {f.name: f.metadata["range"] for f in dataclasses.fields(schema) if "range" in f.metadata}


def check_value(key: str, value: Any, valid: Range) -> None:
    if isinstance(value, float) and not math.isfinite(value) and valid.choices is None:
        bounds = str(valid)
        raise ValueError(
            f"{key}={value!r} is out of range: must be "
            + (bounds if bounds == "any finite number" else f"a finite number {bounds}")
        )
    if not valid.contains(value):
        raise ValueError(f"{key}={value!r} is out of range: must be {valid}")


def check(node: Any, schema: type, prefix: str = "") -> None:
    """Raise ValueError (one line) for the first field of ``node`` outside its declared range;
    ``node`` is a dataclass instance, a dict or an OmegaConf node following ``schema``."""
    for name, valid in ranges(schema).items():
        value = node[name] if hasattr(node, "keys") else getattr(node, name)
        check_value(f"{prefix}{name}", value, valid)
