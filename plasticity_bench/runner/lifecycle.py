"""The life of a run, whatever it trains: the RL runs (``runner.loop.Run``) and the shifts task
sequences (``shifts.train.ShiftsRun``) differ only in what they build, restore and loop over.

``train()``: a finished run (its ``done`` marker) is skipped, or refused if asked for another
length; otherwise the directory is created and locked, the config compared with the one saved
there (or saved), the run built, resumed from its checkpoint if it has one, and trained; the lock
is released however it ends. Every kind of run resumes by the same rules (``RunStore``, one list
of resumable keys: ``runner.compose.RESUMABLE_CHANGES``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from plasticity_bench.runner.compose import RESUMABLE_CHANGES
from plasticity_bench.runner.store import RunStore


class Lifecycle:
    length_key = "total_steps"
    """The config key of the run's length (a finished run asked for another one is refused)."""

    def __init__(self, directory: Path, cfg: DictConfig, identity: tuple):
        """``identity``: the CSV identity columns (suite, game, agent, intervention, variant, seed)."""
        self.dir = directory
        self.store = RunStore(directory, cfg, RESUMABLE_CHANGES, identity)

    def train(self) -> int:
        """Run, resume or skip the run; returns the process exit code (0: finished)."""
        try:
            if self.store.finished(self.length_key):
                return 0
            found = self.store.prepare()
            self.build(resuming=found is not None)
            if found is not None:
                self.restore(found)
            return self.loop(resumed=found is not None)
        finally:
            self.store.release()

    def build(self, resuming: bool) -> None:
        """What the run trains and its logs (``store.open_log``), from the config."""
        raise NotImplementedError

    def restore(self, checkpoint: Path) -> None:
        """Load the checkpoint (``store.load``) into what ``build`` made; ``store.rewind`` cuts the
        logs back to it."""
        raise NotImplementedError

    def loop(self, resumed: bool) -> int:
        """Train to the run's length, checkpointing (``store.save``), then ``store.finish()``."""
        raise NotImplementedError
