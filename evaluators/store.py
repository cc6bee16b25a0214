"""The results store: one directory per run under `results/runs/<run id>/`, holding

- record.json: the finished run (written atomically when it finishes);
- checkpoint.pt: the method's state after the last finished search epoch, tagged with the run's id and config hash
  (loaded with torch's restricted `weights_only` loader: tensors and plain Python values only);
- progress.json: per-architecture results after training (scores of the ranking sample, the method's per-arch
  score caches: standalone trainings, derive candidates), so a killed run redoes at most one of them;
- .lock: held (flock) while a process computes the run, so an identical second run waits, then reuses the record;
- record.<fingerprint 12>.json (record.legacy-<commit>.json for a record without one): a finished record made by
  other code (evaluators/fingerprint.py), kept when a recompute replaced it, its artifacts beside it as
  <name>.<same tag>.json; readers of `runs/*/record.json` do not see it.

One policy for a file that cannot be used (unreadable, not JSON, nested or sized past any file of this program, or
with the right ids but the wrong contents: evaluators/state.py and the record's own validation check them):
- a file whose loss would lose paid-for work or a finished result (checkpoint.pt, record.json) is refused with one
  clear error naming the file and the fix (execution.resume=false starts a run over, execution.force=true
  recomputes a record; an unreadable-by-permission record is told to fix its permissions instead, since force would
  recompute a finished result);
- a cache that only saves time (progress.json, the trained-truth cache, the references cache) is set aside as
  `<name>.corrupt` with a warning naming it, and its work is redone.

checkpoint.pt and progress.json are removed once the record exists. flock is advisory and unreliable on network
file systems (NFS, Lustre): there, do not start identical runs at once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, TypeVar

from oneshot_bench.atomic import read_json, torch_save, write_bytes, write_json
from oneshot_bench.errors import ConfigError
from oneshot_bench.file_kinds import MISSING, kind_of, require_regular
from oneshot_bench.names import path_inside

from .fingerprint import changed_files, describe_changes, short
from .record import RECORD_VERSION, Code, RecordError, RunRecord

log = logging.getLogger("oneshot_bench")
T = TypeVar("T")  # what a state parser makes of a loaded file


def config_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def run_id_for(identity: dict[str, Any]) -> str:
    """Readable and unique: space-method-data-budget-seed plus a hash of the whole identity."""
    return (f"{identity['space']['name']}-{identity['method']['name']}-{identity['data']['name']}-"
            f"{identity['budget']['name']}-s{identity['seed']}-{config_hash(identity)[:10]}")


def torch_load_reason(error: BaseException) -> str:
    """What torch.load found wrong with a file, in one line, without torch's advice to load it with
    weights_only=False: that is the unsafe way (it runs whatever code the file names), never the fix."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line.removeprefix("WeightsUnpickler error: ") for line in lines if line
             and "weights_only" not in line.lower() and "weights only load failed" not in line.lower()
             and "documentation of torch.load" not in line]
    if not lines:
        return type(error).__name__
    return lines[0].split(" Please use `torch.serialization")[0]


def probe_writable(folder: Path) -> None:
    """Make `folder` and write a file in it (OSError otherwise). The probe is this process' own: an identical run
    starting at the same moment probes the same folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-") as probe:
        probe.write(b"ok")
        probe.flush()


def foreign_record(record: RunRecord, run_id: str) -> Optional[str]:
    """Why a record found in run `run_id`'s folder is not that run's result (another run's record copied there, or
    its configuration edited so that it no longer hashes to its id), in words; None when it is."""
    if record.run_id != run_id:
        return f"holds run {record.run_id}, not {run_id}"
    if record.read_from_version != RECORD_VERSION:  # migrated: its rewritten config cannot hash to the old id
        return None
    try:
        own = run_id_for(record.config)
    except (KeyError, TypeError):
        return "holds a configuration without a space, method, data, budget or seed"
    if own != run_id:
        return f"holds a configuration whose run id is {own}, not {run_id}"
    return None


def move_aside(path: Path) -> Path:
    """Keep an unreadable file for inspection as <name>.corrupt (replacing an older one)."""
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target


def _state_code(state: dict[str, Any]) -> Optional[Code]:
    """The code fingerprint a checkpoint or progress file carries (`code`); None when it has none (written before
    fingerprints) or one of another shape (its parser names that)."""
    code = state.get("code")
    if not (isinstance(code, dict) and isinstance(code.get("fingerprint"), str)
            and isinstance(code.get("files"), dict)):
        return None
    return Code(fingerprint=code["fingerprint"], files={str(k): str(v) for k, v in code["files"].items()})


def other_code(state: dict[str, Any], code: Optional[Code]) -> Optional[str]:
    """Why a checkpoint or progress file of this run cannot be resumed by `code`: it was written by other code, so
    its state would mix two code versions in one result; None when it was written by `code`, carries no
    fingerprint (written before fingerprints: resumed as before), or `code` is None."""
    made_by = _state_code(state)
    if code is None or made_by is None or made_by.fingerprint == code.fingerprint:
        return None
    return (f"was written by other code (fingerprint {short(made_by.fingerprint)}, now {short(code.fingerprint)}; "
            f"changed since: {describe_changes(changed_files(made_by.files, code.files))})")


# the files a run's folder holds whose reader or writer would fail or block on anything but a regular file
STATE_FILES = ("record.json", "checkpoint.pt", "progress.json", ".lock")


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
        # an id is built from checked names (oneshot_bench.names), but a hand-edited record or a caller's typo must
        # still never place a run's files outside the store
        return path_inside(self.runs_dir, run_id, key="run id")

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
            kind = kind_of(run_dir)
            if kind != MISSING and not run_dir.is_dir():
                raise ConfigError(f"{run_dir} is {kind or 'a file'}, not a run folder; remove it (this program only "
                                  f"ever makes a folder there) and rerun the same command, or choose another folder "
                                  f"with execution.results_dir=<dir>.")
            probe_writable(run_dir)
            # a directory, FIFO or device in place of a state file fails only when it is written (IsADirectoryError
            # after the whole training) or blocks its reader (a FIFO): refused now
            for name in STATE_FILES:
                require_regular(run_dir / name, "remove it (this program only ever writes a regular file there) and "
                                                "rerun the same command", ConfigError)
        except OSError as e:
            raise ConfigError(f"cannot write results under {run_dir} ({e.strerror or e}); make it writable or choose "
                              f"another folder with execution.results_dir=<dir>.") from None
        free = shutil.disk_usage(run_dir).free
        if free < need_bytes:
            raise ConfigError(f"{run_dir} has {free / 2**20:.0f} MiB free, and this run's checkpoints need about "
                              f"{need_bytes / 2**20:.0f} MiB; free space or choose another folder with "
                              f"execution.results_dir=<dir>.")

    def check_cache(self, cache_dir: Optional[str]) -> None:
        """The cache folder (execution.cache_dir, else <results_dir>/cache) and its truth/ and references/ folders
        are folders, or can be made, and can be written; else a ConfigError naming it, before any data is read or
        any epoch trained (a file there surfaced as NotADirectoryError after the whole training and scoring)."""
        folder = Path(cache_dir) if cache_dir else self.cache_dir
        setting = "execution.cache_dir" if cache_dir else "the cache (execution.cache_dir: null, <results_dir>/cache)"
        fix = "choose another folder with execution.cache_dir=<dir>"
        try:
            # a file anywhere on the way (cache_dir=<a file>/sub) as well as in the cache's own place
            for path in (*reversed(folder.parents), folder, folder / "truth", folder / "references"):
                kind = kind_of(path)
                if kind != MISSING and not path.is_dir():
                    ours = path in (folder, folder / "truth", folder / "references")  # (else the user's own file)
                    raise ConfigError(f"{path} is {kind or 'a file'}, not a folder, and {setting} keeps its files "
                                      f"{'there; remove it, or' if ours else f'in {folder}, under it;'} {fix}.")
            probe_writable(folder)
        except OSError as e:
            raise ConfigError(f"cannot write {setting} under {folder} ({e.strerror or e}); make it writable, or "
                              f"{fix}.") from None

    @contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock; an identical run in another process waits here until this one has finished."""
        import fcntl

        path = self.run_dir(run_id) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # the holder's pid, host and start, so a user whose wait never ends can find a stopped or hung holder
                handle.seek(0)
                holder = handle.read(200).strip() or "unknown pid"
                log.warning("run %s is being computed by another process (%s); waiting for it to finish. If that "
                            "process is stopped or hung, resume it (kill -CONT <pid>) or end it (kill <pid>); "
                            "Ctrl-C stops waiting", run_id, holder)
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.truncate(0)
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since "
                         f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}")
            handle.flush()
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
        path = self.record_path(run_id)
        try:
            with open(path, "rb"):
                pass
        except PermissionError as e:  # a finished result: force=true would recompute it, the permissions are the fix
            raise ConfigError(f"record {path} cannot be read ({e.strerror}): it holds this run's finished result. Fix "
                              f"the file's permissions (e.g. chmod u+r {path}, as its owner) and rerun.") from None
        try:
            record = self.load_record(run_id)
        except RecordError as e:
            raise ConfigError(f"{e}. Rerun with execution.force=true to compute the run again (the unreadable file "
                              f"is kept as record.json.corrupt).") from None
        foreign = foreign_record(record, run_id)
        if foreign is not None:  # returned as "already finished", it would answer this configuration with another's
            raise ConfigError(f"record {path} {foreign}: it was copied here from another run's folder or edited. Move "
                              f"it back to the folder of its own run id, or rerun with execution.force=true to "
                              f"compute this run (the file is then kept beside the new record).")
        return record

    def save_record(self, run_id: str, record: RunRecord, artifacts: Optional[dict[str, Any]] = None) -> Path:
        """Finish a run: its artifacts (`<name>.json`) and record.json, then drop its checkpoint and progress. A
        record already there (force=true, or a recompute of one made by other code) is kept beside the new one when
        other code made it, with its artifacts (`set_aside`); an unreadable one as record.json.corrupt."""
        path = self.record_path(run_id)
        if path.is_file():
            try:
                old = RunRecord.load(path)
            except RecordError:
                move_aside(path)
            else:
                other_code = old.code is None or record.code is None or old.code.fingerprint != record.code.fingerprint
                foreign = foreign_record(old, run_id)  # copied from another run's folder or edited: kept too
                if other_code or foreign is not None:
                    kept = self.set_aside(run_id, old)
                    log.warning("kept the record %s as %s", "made by other code" if other_code else foreign, kept)
        for name, content in (artifacts or {}).items():
            self.write_artifact(run_id, name, content)
        record.save(path)
        self.checkpoint_path(run_id).unlink(missing_ok=True)
        self.progress_path(run_id).unlink(missing_ok=True)
        return path

    # ---- code fingerprints (evaluators/fingerprint.py) ---------------------------------------------------------
    @staticmethod
    def aside_tag(record: RunRecord) -> str:
        """What names a record set aside: its fingerprint's first 12 digits, or `legacy-<commit>` without one."""
        if record.code is not None:
            return short(record.code.fingerprint)
        sha, _, dirty = (record.git_commit or "unknown").partition("+")
        tag = "legacy-" + sha[:12] + ("-dirty" if dirty else "")
        return re.sub(r"[^A-Za-z0-9-]", "_", tag)  # a hand-edited commit never makes a path

    def set_aside(self, run_id: str, record: RunRecord) -> Path:
        """Copy the run's record.json (and the method artifacts it lists) to `record.<tag>.json` (`<name>.<tag>.json`)
        before a recompute replaces them; readers of `runs/*/record.json` do not see the copies."""
        tag, run_dir = self.aside_tag(record), self.run_dir(run_id)
        for name in record.artifacts:
            source = run_dir / name
            if name.endswith(".json") and "/" not in name and source.is_file():
                write_bytes(run_dir / f"{name[:-len('.json')]}.{tag}.json", source.read_bytes())
        target = run_dir / f"record.{tag}.json"
        write_bytes(target, self.record_path(run_id).read_bytes())
        return target

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

    def load_checkpoint(self, run_id: str, cfg_hash: str, parse: Optional[Callable[[dict[str, Any]], T]] = None,
                        code: Optional[Code] = None) -> Optional[T | dict[str, Any]]:
        """The run's checkpoint, or None. Loaded with weights_only=True (tensors and plain values; a file that holds
        anything else is refused, never executed); one written by another run or configuration is refused too, and
        so is one written by other code than `code` (`other_code`) and one that `parse` (e.g.
        evaluators.state.parse_checkpoint) rejects with a ValueError; `parse`'s result is returned."""
        import pickle

        import torch

        path = self.checkpoint_path(run_id)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as e:
            raise self.refused_checkpoint(run_id, f"is not a checkpoint this program can read "
                                                  f"({torch_load_reason(e)})") from None
        if not isinstance(state, dict) or state.get("run_id") != run_id or state.get("config_hash") != cfg_hash:
            owner = state.get("run_id") if isinstance(state, dict) else None
            raise self.refused_checkpoint(run_id, f"was written by {f'run {owner}' if owner else 'another program'}, "
                                                  f"not by this run ({run_id}) with this configuration")
        made_by_other_code = other_code(state, code)
        if made_by_other_code is not None:
            raise self.refused_checkpoint(run_id, f"{made_by_other_code}, and resuming it would mix two code versions "
                                                  f"in one result")
        if parse is None:
            return state
        try:
            return parse(state)
        except ValueError as e:
            raise self.refused_checkpoint(run_id, f"holds the right ids but not a state this run can resume "
                                                  f"({e})") from None

    def refused_checkpoint(self, run_id: str, problem: str) -> ConfigError:
        """The one error for a checkpoint that cannot be resumed: the file, the problem, the fix."""
        return ConfigError(f"checkpoint {self.checkpoint_path(run_id)} {problem}. Rerun with execution.resume=false "
                           f"to start this run over (the file is then replaced).")

    def save_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        write_json(self.progress_path(run_id), progress)

    def load_progress(self, run_id: str, cfg_hash: str, parse: Optional[Callable[[dict[str, Any]], T]] = None,
                      code: Optional[Code] = None) -> Optional[T | dict[str, Any]]:
        """Per-arch progress after training (`parse`'s result when given, e.g. evaluators.state.parse_progress),
        or None; an unreadable or foreign file, one written by other code than `code`, or one that `parse` rejects
        with a ValueError, is moved aside (it only saves time: losing it redoes work, never changes a result)."""
        path = self.progress_path(run_id)
        if not path.is_file():
            return None
        try:
            progress = read_json(path)
            if not isinstance(progress, dict):
                raise ValueError(f"a JSON {type(progress).__name__}, not an object")
            if progress.get("run_id") != run_id or progress.get("config_hash") != cfg_hash:
                raise ValueError("it belongs to another run")
            made_by_other_code = other_code(progress, code)
            if made_by_other_code is not None:
                raise ValueError(f"it {made_by_other_code}")
            return parse(progress) if parse is not None else progress
        except (OSError, ValueError) as e:
            problem = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        log.warning("progress file %s cannot be used (%s); kept as %s, its work is redone", path, problem,
                    move_aside(path).name)
        return None
