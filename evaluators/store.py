"""The results store: one directory per run under `results/runs/<run id>/`, holding

- record.json: the finished run (written atomically when it finishes);
- checkpoint.pt: the method's state after the last finished search epoch, tagged with the run's id and config hash
  (loaded with torch's restricted `weights_only` loader: tensors and plain Python values only);
- progress.json: per-architecture results after training (scores of the ranking sample, the method's per-arch
  score caches: standalone trainings, derive candidates), so a killed run redoes at most one of them;
- .lock: held (flock) while a process computes the run, so an identical second run waits, then reuses the record.

checkpoint.pt and progress.json are removed once the record exists. flock is advisory and unreliable on network
file systems (NFS, Lustre): there, do not start identical runs at once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from oneshot_bench.atomic import read_json, torch_save, write_json
from oneshot_bench.errors import ConfigError

from .record import RecordError, RunRecord

log = logging.getLogger("oneshot_bench")


def config_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def run_id_for(identity: dict[str, Any]) -> str:
    """Readable and unique: space-method-data-budget-seed plus a hash of the whole identity."""
    return (f"{identity['space']['name']}-{identity['method']['name']}-{identity['data']['name']}-"
            f"{identity['budget']['name']}-s{identity['seed']}-{config_hash(identity)[:10]}")


def move_aside(path: Path) -> Path:
    """Keep an unreadable file for inspection as <name>.corrupt (replacing an older one)."""
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target


class ResultsStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def record_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "record.json"

    def checkpoint_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoint.pt"

    def progress_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "progress.json"

    # ---- before any work ------------------------------------------------------------------------------------------
    def check_writable(self, run_id: str, need_bytes: int) -> None:
        """The run's folder can be created and written, with `need_bytes` free for checkpoints; else a ConfigError
        naming the folder, before any data is read or any epoch trained."""
        run_dir = self.run_dir(run_id)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            # a probe of this process' own (an identical run starting at the same moment probes the same folder)
            with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-probe-") as probe:
                probe.write(b"ok")
                probe.flush()
        except OSError as e:
            raise ConfigError(f"cannot write results under {run_dir} ({e.strerror or e}); make it writable or choose "
                              f"another folder with execution.results_dir=<dir>.") from None
        free = shutil.disk_usage(run_dir).free
        if free < need_bytes:
            raise ConfigError(f"{run_dir} has {free / 2**20:.0f} MiB free, and this run's checkpoints need about "
                              f"{need_bytes / 2**20:.0f} MiB; free space or choose another folder with "
                              f"execution.results_dir=<dir>.")

    @contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock; an identical run in another process waits here until this one has finished."""
        import fcntl

        path = self.run_dir(run_id) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("run %s is being computed by another process; waiting for it to finish", run_id)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def clean_tmp(self, run_id: str) -> list[Path]:
        """Remove the half-written temporary files a killed process left in the run's folder (call under its lock)."""
        leftovers = sorted(self.run_dir(run_id).glob(".*.tmp"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    # ---- records ----------------------------------------------------------------------------------------------------
    def has_record(self, run_id: str) -> bool:
        return self.record_path(run_id).is_file()

    def load_record(self, run_id: str) -> RunRecord:
        return RunRecord.load(self.record_path(run_id))

    def finished_record(self, run_id: str) -> Optional[RunRecord]:
        """The run's record if it has one; an unreadable one is a ConfigError naming the file and the fix."""
        if not self.has_record(run_id):
            return None
        try:
            return self.load_record(run_id)
        except RecordError as e:
            raise ConfigError(f"{e}. Rerun with execution.force=true to compute the run again (the unreadable file "
                              f"is kept as record.json.corrupt).") from None

    def save_record(self, run_id: str, record: RunRecord) -> Path:
        path = self.record_path(run_id)
        if path.is_file():  # force=true over an existing (maybe unreadable) record: keep the old one aside
            try:
                RunRecord.load(path)
            except RecordError:
                move_aside(path)
        record.save(path)
        self.checkpoint_path(run_id).unlink(missing_ok=True)
        self.progress_path(run_id).unlink(missing_ok=True)
        return path

    def write_artifact(self, run_id: str, name: str, content: Any) -> Path:
        """A method's JSON artifact (e.g. a latency table), beside the record as <name>.json."""
        path = self.run_dir(run_id) / f"{name}.json"
        write_json(path, content)
        return path

    def records(self) -> Iterator[RunRecord]:
        """Every finished record (unfinished runs have no record.json and are skipped)."""
        for path in sorted(self.runs_dir.glob("*/record.json")):
            yield RunRecord.load(path)

    # ---- checkpoints and progress ---------------------------------------------------------------------------------
    def save_checkpoint(self, run_id: str, cfg_hash: str, state: dict[str, Any]) -> None:
        torch_save(self.checkpoint_path(run_id), {"run_id": run_id, "config_hash": cfg_hash, **state})

    def load_checkpoint(self, run_id: str, cfg_hash: str) -> Optional[dict[str, Any]]:
        """The run's checkpoint, or None. Loaded with weights_only=True (tensors and plain values; a file that holds
        anything else is refused, never executed); one written by another run or configuration is refused too."""
        import pickle

        import torch

        path = self.checkpoint_path(run_id)
        if not path.is_file():
            return None
        fix = "Rerun with execution.resume=false to start this run over (the file is then replaced)."
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"checkpoint {path} is not a checkpoint this program can read ({first}). {fix}") from None
        if not isinstance(state, dict) or state.get("run_id") != run_id or state.get("config_hash") != cfg_hash:
            owner = state.get("run_id") if isinstance(state, dict) else None
            raise ConfigError(f"checkpoint {path} was written by {f'run {owner}' if owner else 'another program'}, "
                              f"not by this run ({run_id}) with this configuration. {fix}")
        return state

    def save_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        write_json(self.progress_path(run_id), progress)

    def load_progress(self, run_id: str, cfg_hash: str) -> Optional[dict[str, Any]]:
        """Per-arch progress after training, or None; an unreadable or foreign file is moved aside (it only saves
        time: losing it redoes work, never changes a result)."""
        path = self.progress_path(run_id)
        if not path.is_file():
            return None
        try:
            progress = read_json(path)
            if progress.get("run_id") == run_id and progress.get("config_hash") == cfg_hash:
                return progress
        except (OSError, ValueError, AttributeError):
            pass
        log.warning("progress file %s is unreadable or belongs to another run; kept as %s, its work is redone", path,
                    move_aside(path).name)
        return None
