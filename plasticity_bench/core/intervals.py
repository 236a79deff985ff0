"""The one interval test: logging, probes, checkpoints and scheduled interventions all act when a
counter crosses a multiple of their interval."""

from __future__ import annotations


def crossed(before: int, after: int, interval: int) -> bool:
    """Whether going from ``before`` to ``after`` passes a multiple of ``interval`` (never when
    ``interval`` <= 0). Several updates can share one agent step: it is true once."""
    return interval > 0 and after // interval > before // interval
