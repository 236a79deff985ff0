"""A run directory, the same for the RL runner and the shifts suite: the one place that decides
whether a run starts, resumes or is already finished, checks that a resumed run has the same
config, saves checkpoints with the byte offsets of its CSV logs, and cuts the logs back to them.

Layout: ``config.yaml``, the CSV logs, ``checkpoint/`` (runner.checkpoint), ``done``."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from runner import checkpoint
from runner.config import RunError, config_differences
from runner.logger import CSVLog


class RunStore:
    def __init__(self, directory: Path, cfg: DictConfig, resumable: tuple[str, ...], identity: tuple):
        """``resumable``: the keys a resumed run may change; ``identity``: the CSV identity columns."""
        self.dir, self.cfg, self.resumable, self.identity = Path(directory), cfg, resumable, identity
        self.logs: dict[str, CSVLog] = {}

    def finished(self, length_key: str) -> bool:
        """Whether the run has its ``done`` marker; a finished run asked for another length
        (``length_key``: ``total_steps``, ``tasks``) is an error, not a silent skip."""
        if not (self.dir / "done").exists():
            return False
        saved = self.dir / "config.yaml"
        finished_at = OmegaConf.select(OmegaConf.load(saved), length_key) if saved.exists() else None
        asked = OmegaConf.select(self.cfg, length_key)
        if finished_at is not None and finished_at != asked:
            raise RunError(f"{self.dir} finished at {length_key}={finished_at:,} and this asks for {asked:,}; a "
                           "finished run cannot be extended (its checkpoint is gone): delete that directory to run "
                           "it again, or pass another RUN_DIR")
        print(f"{self.dir}: finished already (done marker); skipping. Delete the directory to run it again.")
        return True

    def prepare(self) -> Path | None:
        """Create the directory, check that a run found there is this run, save the config;
        returns the checkpoint to resume from, if any."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".writable"
            probe.touch()
            probe.unlink()
        except OSError as error:
            raise RunError(f"run directory {self.dir} is not writable ({error.strerror}); pass another RUN_DIR")
        try:
            found = checkpoint.find(self.dir)
        except checkpoint.CorruptCheckpoint as error:
            raise self._corrupt(error)
        saved = self.dir / "config.yaml"
        if found and saved.exists():
            differences = config_differences(OmegaConf.load(saved), self.cfg, self.resumable)
            if differences:
                raise RunError(f"{self.dir} holds a run with another config ({'; '.join(differences[:3])}); "
                               "use another RUN_DIR, seed or variant, or delete that directory")
        OmegaConf.save(self.cfg, saved)
        return found

    def open_log(self, name: str, columns: tuple[str, ...], resuming: bool) -> CSVLog:
        """``<name>.csv``; a run killed before its first checkpoint starts it over (its rows will
        be written again, identically)."""
        self.logs[name] = CSVLog(self.dir / f"{name}.csv", columns, self.identity, append=resuming)
        return self.logs[name]

    def save(self, state: dict, logs: tuple[str, ...]) -> None:
        """A checkpoint of ``state`` and of where the ``logs`` end now."""
        checkpoint.save(self.dir, {**state, "log_offsets": {name: self.logs[name].offset() for name in logs}})

    def load(self, found: Path) -> dict:
        try:
            return checkpoint.load(found)
        except checkpoint.CorruptCheckpoint as error:
            raise self._corrupt(error)

    def rewind(self, state: dict) -> None:
        """Cut the logs back to the checkpoint ``state`` (once it is known to fit): rows written
        after it will be written again, identically."""
        for name, offset in state["log_offsets"].items():
            self.logs[name].truncate(offset)

    def finish(self) -> None:
        for log in self.logs.values():
            log.close()
        (self.dir / "done").touch()
        checkpoint.remove(self.dir)  # a finished run needs no (possibly multi-GB) replay checkpoint

    def _corrupt(self, error: Exception) -> RunError:
        return RunError(f"corrupt checkpoint: {error}; it was left as it is. To start over, delete {self.dir}")
