"""Long-format, append-only CSV logs that carry the run identity on every row (columns:
core.schema), the optional TensorBoard mirror, and the averaging of training metrics."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from plasticity_bench.core.schema import legacy_columns


class CSVLog:
    """One CSV file; rows are flushed as they are written, and a resumed run truncates the
    file back to the byte offset its checkpoint recorded, so no row is duplicated or lost."""

    def __init__(self, path: Path, columns: tuple[str, ...], identity: tuple, append: bool):
        self.path, self.identity, self.columns = Path(path), tuple(identity), tuple(columns)
        fresh = not append or not self.path.exists() or self.path.stat().st_size == 0
        self.legacy = not fresh and _header(self.path) == legacy_columns(self.columns)
        self._file = open(self.path, "w" if fresh else "a", newline="")
        self._writer = csv.writer(self._file)
        if fresh:
            self._writer.writerow(columns)
            self._file.flush()

    def write(self, *values) -> None:
        self._writer.writerow((*self.identity, *values))

    def flush(self) -> None:
        self._file.flush()

    def offset(self) -> int:
        self._file.flush()
        return self._file.tell()

    def truncate(self, offset: int) -> None:
        """Cut the file back to ``offset`` (a checkpoint's). A file written before runs had a
        ``variant`` column gets it now, after the cut (its offsets are in the old layout)."""
        self._file.flush()
        os.truncate(self.path, offset)
        self._file.seek(offset)
        if self.legacy:
            self._file.close()
            with open(self.path, newline="") as f:
                rows = list(csv.reader(f))
            at = self.columns.index("variant")
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerows(
                    [list(self.columns)] + [r[:at] + [r[at - 1]] + r[at:] for r in rows[1:]]
                )
            self._file = open(self.path, "a", newline="")
            self._writer = csv.writer(self._file)
            self.legacy = False

    def close(self) -> None:
        self._file.close()


def _header(path: Path) -> tuple[str, ...]:
    with open(path, newline="") as f:
        return tuple(next(csv.reader(f), ()))


class TensorBoardLog:
    """An optional mirror of the logged values as TensorBoard scalars (``log.tensorboard=true``):
    the CSVs stay the source of truth and are written the same with it on or off. A resumed run
    passes its checkpoint step as ``purge_step``, so TensorBoard drops the events written after
    that checkpoint by the session that was killed."""

    def __init__(self, directory: Path | None, purge_step: int | None = None):
        self._writer = None
        if directory is not None:
            from torch.utils.tensorboard import SummaryWriter  # imported only when asked for

            self._writer = SummaryWriter(log_dir=str(directory), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class MetricAverager:
    """Averages training metrics between log rows. Values are kept as they come (tensors stay
    tensors, so the hot loop does no arithmetic and never waits on a device) and summed exactly
    (``math.fsum``) when a row is written: the mean is then the same whatever the order of the
    values and wherever a checkpoint split them."""

    def __init__(self):
        self.values: dict[str, list] = {}

    def add(self, metrics: dict) -> None:
        for key, value in metrics.items():
            self.values.setdefault(key, []).append(value)

    def pop(self) -> dict[str, float]:
        means = {k: math.fsum(float(v) for v in vs) / len(vs) for k, vs in self.values.items()}
        self.values = {}
        return means

    def state_dict(self) -> dict:
        return {"values": {k: [float(v) for v in vs] for k, vs in self.values.items()}}

    def load_state_dict(self, state: dict) -> None:
        if "values" in state:
            self.values = {k: list(vs) for k, vs in state["values"].items()}
        else:  # a checkpoint of the summing averager: its sums, as many entries as it counted
            self.values = {k: [s] + [0.0] * (state["counts"][k] - 1) for k, s in state["sums"].items()}
