"""The CSV schema of a run, the one module the runner, the shifts suite and the analysis share.
Every row carries the run identity, so ``pandas.concat`` of many runs' CSVs just works."""

from __future__ import annotations

IDENTITY = ("suite", "game", "agent", "intervention", "variant", "seed")
RETURNS_COLUMNS = (*IDENTITY, "step", "episode_return", "episode_length")
METRICS_COLUMNS = (*IDENTITY, "step", "metric", "layer", "value")
# Wall-clock speed, kept apart from metrics.csv so that the logs a run is judged by stay
# reproducible to the byte; one row per log interval, appended by every session of the run.
TIMING_COLUMNS = (*IDENTITY, "step", "session_start_step", "wall_seconds", "steps_per_second")


def legacy_columns(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The same columns as written before runs had a ``variant`` (read as variant = intervention)."""
    return tuple(c for c in columns if c != "variant")


# Keys of a run's config.yaml that do not change what it trains: they stay out of its variant label
# (a key or any key under it). seed has its own level in the run path; total_steps is a run's length
# (a longer run of a config is the same experiment).
NOT_TRAINING = (
    "seed",
    "population",
    "population_kernel",
    "total_steps",
    "env.total_steps",
    "device",
    "threads",
    "run_dir",
    "log",
    "checkpoint",
    "probe",
    "variant",
)


def flat(tree: dict, prefix: str = "") -> dict:
    """A nested config as one level of dotted keys ({"a": {"b": 1}} -> {"a.b": 1})."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
