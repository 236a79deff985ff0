"""A run directory, the same for the RL runner and the shifts suite: the one place that decides
whether a run starts, resumes or is already finished, checks that a resumed run has the same
config, saves checkpoints with the byte offsets of its CSV logs, and cuts the logs back to them;
and a run's identity (its variant label). It imports no agent, env or probe.

Layout: ``config.yaml``, the CSV logs, ``checkpoint/`` (runner.checkpoint), ``done``."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from plasticity_bench import interventions
from plasticity_bench.core.schema import flat
from plasticity_bench.runner import checkpoint
from plasticity_bench.runner.logger import CSVLog


class RunError(RuntimeError):
    """A run that cannot go on; the message says why and what to do, in one line."""


PART_MAX = 100  # characters of one directory name of a run path


def run_directory(root: str | Path, *parts: tuple[str, object]) -> Path:
    """``root/part/part/...``, the one place a run's path is built (RL runs, shifts runs, sweeps):
    every part, given as (key, value), must name one directory inside ``root``. A ValueError names
    the key and what is wrong (a label such as ``../x`` would write outside RUN_DIR)."""
    path = Path(root)
    for key, value in parts:
        text = str(value)
        problem = (
            "is empty"
            if not text
            else "contains '/'"
            if "/" in text or "\\" in text
            else "contains '..'"
            if ".." in text
            else "starts with '.'"
            if text.startswith(".")
            else "has a character that is not printable"
            if not text.isprintable()
            else f"is {len(text)} characters long (at most {PART_MAX})"
            if len(text) > PART_MAX
            else None
        )
        if problem:
            raise ValueError(f"{key}={text!r} cannot name a run directory: it {problem}")
        path = path / text
    return path


class RunStore:
    def __init__(self, directory: Path, cfg: DictConfig, resumable: tuple[str, ...], identity: tuple):
        """``resumable``: the keys a resumed run may change; ``identity``: the CSV identity columns."""
        self.dir, self.cfg, self.resumable, self.identity = Path(directory), cfg, resumable, identity
        self.logs: dict[str, CSVLog] = {}
        self._lock = None  # the open lock file, held for the life of the process

    def finished(self, length_key: str) -> bool:
        """Whether the run has its ``done`` marker; a finished run asked for another length
        (``length_key``: ``total_steps``, ``tasks``) is an error, not a silent skip."""
        if not (self.dir / "done").exists():
            return False
        saved = self.dir / "config.yaml"
        previous = self._load_config(saved) if saved.exists() else None
        differences = config_differences(previous, self.cfg, self.resumable) if previous is not None else []
        if differences:  # possible under a label of one's own (variant=NAME)
            raise RunError(
                f"{self.dir} holds a finished run with another config ({'; '.join(differences[:3])}); "
                "use another variant, RUN_DIR or seed, or delete that directory"
            )
        finished_at = OmegaConf.select(previous, length_key) if previous is not None else None
        asked = OmegaConf.select(self.cfg, length_key)
        if finished_at is not None and finished_at != asked:
            raise RunError(
                f"{self.dir} finished at {length_key}={finished_at:,} and this asks for {asked:,}; a "
                "finished run cannot be extended (its checkpoint is gone): delete that directory to run "
                "it again, or pass another RUN_DIR"
            )
        print(f"{self.dir}: finished already (done marker); skipping. Delete the directory to run it again.")
        return True

    def prepare(self) -> Path | None:
        """Create the directory and lock it for this process, check that a run found there is this
        run (its config.yaml, written when it started, whether or not it reached a checkpoint),
        save the config; returns the checkpoint to resume from, if any."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunError(
                f"run directory {self.dir} is not writable ({error.strerror}); pass another RUN_DIR"
            )
        self.lock()  # (opening the lock file also proves the directory writable)
        if (self.dir / "done").exists():  # finished by another process since finished() looked
            raise RunError(f"{self.dir} was finished by another process meanwhile; nothing was changed")
        try:
            found = checkpoint.find(self.dir)
        except checkpoint.CorruptCheckpoint as error:
            raise self._corrupt(error)
        self.check()
        saved = self.dir / "config.yaml"
        written = saved.with_name(f".config.yaml.{os.getpid()}")  # whole or not at all: a kill mid-write
        OmegaConf.save(self.cfg, written)  # leaves the previous file
        os.replace(written, saved)
        return found

    def check(self) -> None:
        """Refuse a directory that holds a run of another config; writes nothing (a population
        checks every seed's directory before it creates any)."""
        saved = self.dir / "config.yaml"
        if saved.exists():
            differences = config_differences(self._load_config(saved), self.cfg, self.resumable)
            if differences:
                raise RunError(
                    f"{self.dir} holds a run with another config ({'; '.join(differences[:3])}); "
                    "nothing was changed there: use another RUN_DIR, seed or variant, "
                    "or delete that directory"
                )

    def _load_config(self, saved: Path) -> DictConfig:
        try:
            loaded = OmegaConf.load(saved)
        except Exception as error:  # noqa: BLE001 (a YAML error of any kind: one line)
            raise RunError(
                f"{saved} cannot be read ({type(error).__name__}); delete that directory to start over"
            )
        if not isinstance(loaded, DictConfig) or not loaded:
            raise RunError(f"{saved} is empty; delete that directory to start over")
        return loaded

    def lock(self) -> None:
        """An OS lock on the run directory (``.lock``), held until the process ends, however it ends
        (the kernel drops it at exit, kill -9 included): one process per run."""
        try:
            handle = open(self.dir / ".lock", "a+")
        except OSError as error:
            raise RunError(
                f"run directory {self.dir} is not writable ({error.strerror}); pass another RUN_DIR"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            who = "this process" if holder == str(os.getpid()) else f"another process (PID {holder})"
            raise RunError(
                f"{self.dir} is in use by {who}; wait for it to end, or use another RUN_DIR, seed or variant"
            ) from None
        except OSError as error:  # a filesystem without locks (some network filesystems)
            handle.close()
            raise RunError(
                f"cannot lock {self.dir} ({error.strerror}); use a RUN_DIR on a local filesystem"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        """Give the lock up (the run is over, however it ended); the OS does it at exit anyway."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

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
        return RunError(
            f"corrupt checkpoint: {error}; it was left as it is. To start over, delete {self.dir}"
        )


# ---- a run's identity: its variant label, and what differs between two configs ----------
def variant_label(intervention: str, defaults: dict, config: dict, ignored: tuple[str, ...]) -> str:
    """The intervention name, plus the ``key=value`` of every value that differs from
    ``defaults`` and changes training, in key order: ``ln_l2[agent.lr=0.001,l2.coef=0.001]``.
    Intervention keys are named without their ``interventions.`` prefix and only for the
    families the run uses. A long list keeps its first keys and a hash of all of them."""
    used = set(interventions.split_name(intervention))
    changes = []
    for key, _, value in _flat_diff(flat(defaults), flat(config)):
        if any(key == i or key.startswith(i + ".") for i in ignored):
            continue
        if key.startswith("interventions."):
            family = key.split(".")[1]
            if family not in used:
                continue
            key = key[len("interventions.") :]
        changes.append(f"{key}={_short(value)}")
    if not changes:
        return intervention
    inner, room = ",".join(changes), PART_MAX - len(intervention) - 2  # the label names one directory
    if len(inner) > room:  # stable: the same changes always give the same label
        digest = hashlib.sha1(inner.encode()).hexdigest()[:8]
        kept = []
        for change in changes:
            tail = f"+{len(changes) - len(kept) - 1}_more,{digest}"
            if len(",".join([*kept, change, tail])) > min(room, 80):
                break
            kept.append(change)
        inner = ",".join([*kept, f"+{len(changes) - len(kept)}_more", digest])
    return f"{intervention}[{inner}]"


def _short(value) -> str:
    """A value as a path-safe token: no '/' and no blanks."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("/", "_").replace(" ", "")


def config_differences(saved: DictConfig, new: DictConfig, resumable: tuple[str, ...]) -> list[str]:
    """Keys whose values differ, apart from those a resumed run may change (``resumable``) and
    those the saved config predates (a key added by a newer version has its default there)."""
    a, b = OmegaConf.to_container(saved), OmegaConf.to_container(new)
    # Only the families this run uses matter: a newer version adding a family stays resumable.
    used = set(interventions.split_name(new.intervention))
    for d in (a, b):
        d["interventions"] = {f: v for f, v in (d.get("interventions") or {}).items() if f in used}
    for key in resumable:
        for d in (a, b):
            *parents, leaf = key.split(".")
            for p in parents:
                d = d.get(p, {})
            d.pop(leaf, None)
    return [f"{k}: {va!r} -> {vb!r}" for k, va, vb in _flat_diff(a, b, new_keys_missing_in_a=True)]


def _flat_diff(a, b, prefix="", new_keys_missing_in_a: bool = False):
    for key in sorted(set(a) | set(b)):
        if new_keys_missing_in_a and key not in a:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from _flat_diff(va, vb, f"{prefix}{key}.", new_keys_missing_in_a)
        elif va != vb:
            yield f"{prefix}{key}", va, vb
