"""Atomic checkpoints: a directory written in full beside the old one, then swapped in.

Large numpy arrays (the replay buffer) go to their own ``.npy`` files, the rest to one
``state.pt``. A ``COMPLETE`` file is written last; a directory without it is never loaded.
Layout: ``checkpoint/`` (current), ``checkpoint.tmp/`` (being written), ``checkpoint.old/``
(the previous one, kept only during the swap).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

BIG_ARRAY_BYTES = 1 << 20


class CorruptCheckpoint(RuntimeError):
    pass


def _split(obj, arrays: dict, path: str):
    """Replace big arrays in a nested dict by ``{"__npy__": name}`` placeholders."""
    if isinstance(obj, dict):
        return {k: _split(v, arrays, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return compact(obj)
    if isinstance(obj, np.ndarray) and obj.nbytes >= BIG_ARRAY_BYTES:
        arrays[path] = obj
        return {"__npy__": path}
    return obj


def compact(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor that is a view of a larger one (a seed's slice of a population's stacked
    parameters) as a copy of its own: ``torch.save`` writes a view's whole storage."""
    if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
        return tensor.clone()
    return tensor


def _join(obj, directory: Path):
    if isinstance(obj, dict):
        if set(obj) == {"__npy__"}:
            return np.load(directory / f"{obj['__npy__']}.npy")
        return {k: _join(v, directory) for k, v in obj.items()}
    return obj


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(run_dir: Path, state: dict) -> None:
    final, tmp, old = run_dir / "checkpoint", run_dir / "checkpoint.tmp", run_dir / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    arrays: dict[str, np.ndarray] = {}
    small = _split(state, arrays, "")
    for name, array in arrays.items():
        with open(tmp / f"{name}.npy", "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
    with open(tmp / "state.pt", "wb") as f:
        torch.save(small, f)
        f.flush()
        os.fsync(f.fileno())
    (tmp / "COMPLETE").touch()
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    _fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def find(run_dir: Path) -> Path | None:
    """The newest complete checkpoint directory (a kill during the swap leaves ``.old``)."""
    for candidate in (run_dir / "checkpoint", run_dir / "checkpoint.old"):
        if (candidate / "COMPLETE").exists():
            return candidate
    if (run_dir / "checkpoint").exists():
        raise CorruptCheckpoint(f"{run_dir / 'checkpoint'} has no COMPLETE marker")
    return None


def load(directory: Path) -> dict:
    try:
        with open(directory / "state.pt", "rb") as f:
            small = torch.load(f, map_location="cpu", weights_only=False)
        return _join(small, directory)
    except Exception as error:  # any unreadable file means the same thing to the user
        raise CorruptCheckpoint(f"{directory} cannot be read ({type(error).__name__}: {error})") from None


def remove(run_dir: Path) -> None:
    for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
