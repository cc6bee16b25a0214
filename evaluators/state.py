"""A run's state files other than its record, read into typed structures with the validation records get
(evaluators/record.py): required and unknown keys, types, and ranges. A file with the right ids but the wrong
contents (hand-edited, from an older layout, corrupted in a way its format cannot tell) is caught here, before it
is used, and never reaches the run as a KeyError or as a silently wrong result.

- `Checkpoint` (checkpoint.pt): what the runner saves after each search epoch. Its epoch lies in
  [0, budget.search_epochs - 1] and its history holds one row per finished epoch.
- `Progress` (progress.json): per-arch results after training.
- `TruthEntry` (one file of the trained-truth cache): a standalone training's accuracies, in [0, 100] and finite.
- `check_reference_sizes` (the references cache): each arch's parameter count and FLOPs.

Each parser raises a ValueError (`RecordError`, naming the field) and leaves the policy to its caller, the one
stated in evaluators/store.py: a checkpoint is refused with a clear error naming the file and the fix, a cache
file is set aside as `<name>.corrupt` and recomputed.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from .record import PHASES, AnytimePoint, Code, RecordError, check_cost, check_in_range, typed


@dataclass
class Checkpoint:
    run_id: str
    config_hash: str
    method: dict[str, Any]  # Method.state_dict(): its layout is the method's (Method.load_state_dict checks it)
    seconds: dict[str, float]  # device-seconds per cost phase so far
    history: list[dict[str, Any]]  # one row per finished search epoch, {"epoch": i, ...}
    epoch: int  # the last finished search epoch
    torch_rng: Any  # torch.get_rng_state() after it (a uint8 tensor)
    anytime: list[AnytimePoint] = field(default_factory=list)  # older checkpoints have none
    code: Optional[Code] = None  # the code that wrote it (evaluators/fingerprint.py); older checkpoints have none

    def anytime_rows(self) -> list[dict[str, Any]]:
        """The anytime points as the runner keeps them (AnytimePoint fields)."""
        return [asdict(p) for p in self.anytime]


def parse_checkpoint(state: Any, search_epochs: int) -> Checkpoint:
    """A loaded checkpoint.pt as a Checkpoint of a run with `search_epochs` epochs (RecordError otherwise)."""
    import torch

    ckpt = typed(Checkpoint, state, "checkpoint")
    if not 0 <= ckpt.epoch <= search_epochs - 1:
        raise RecordError(f"checkpoint.epoch is {ckpt.epoch}, but this run has budget.search_epochs={search_epochs} "
                          f"(epochs 0 to {search_epochs - 1})")
    if len(ckpt.history) != ckpt.epoch + 1:
        raise RecordError(f"checkpoint.history has {len(ckpt.history)} rows for epochs 0 to {ckpt.epoch}")
    for i, row in enumerate(ckpt.history):
        if row.get("epoch") != i:
            raise RecordError(f"checkpoint.history[{i}] is the row of epoch {row.get('epoch')!r}, not of epoch {i}")
    check_seconds("checkpoint", ckpt.seconds)
    for i, point in enumerate(ckpt.anytime):
        where = f"checkpoint.anytime[{i}]"
        if not 1 <= point.epoch <= ckpt.epoch + 1:  # (a point's epoch counts the epochs trained before it)
            raise RecordError(f"{where}.epoch is {point.epoch}, but the checkpoint has {ckpt.epoch + 1} epoch(s) "
                              f"trained")
        check_in_range(f"{where}.kendall_tau", point.kendall_tau, -1.0, 1.0)
        check_in_range(f"{where}.kendall_tau_ci_low", point.kendall_tau_ci_low, -1.0, 1.0, nan_ok=True)
        check_in_range(f"{where}.kendall_tau_ci_high", point.kendall_tau_ci_high, -1.0, 1.0, nan_ok=True)
        check_cost(f"{where}.train_seconds", point.train_seconds)
        check_cost(f"{where}.n", point.n)
    reference = torch.get_rng_state()
    rng = ckpt.torch_rng
    if not (isinstance(rng, torch.Tensor) and rng.dtype == reference.dtype and rng.shape == reference.shape):
        raise RecordError(f"checkpoint.torch_rng is not torch's RNG state (a {reference.dtype} tensor of shape "
                          f"{tuple(reference.shape)})")
    return ckpt


def check_seconds(where: str, seconds: dict[str, float]) -> None:
    """Device-seconds per cost phase: known phases, finite and >= 0."""
    unknown = sorted(set(seconds) - set(PHASES))
    if unknown:
        raise RecordError(f"{where}.seconds names unknown cost phase(s) {unknown} (phases: {', '.join(PHASES)})")
    for phase, value in seconds.items():
        check_cost(f"{where}.seconds.{phase}", value)


@dataclass
class Scored:
    """One sample arch's ranking score and its extra proxies' scores."""

    score: float
    extra: dict[str, float]


@dataclass
class Progress:
    run_id: str
    config_hash: str
    seconds: dict[str, float]
    ranking: dict[str, Scored]  # arch string -> its scores
    cache: dict[str, dict[str, float]]  # purpose -> arch string -> the method's cached score
    code: Optional[Code] = None  # the code that wrote it (evaluators/fingerprint.py); older files have none

    def ranking_rows(self) -> dict[str, dict[str, Any]]:
        """The scores as the runner keeps them ({"score", "extra"} by arch string)."""
        return {arch: asdict(s) for arch, s in self.ranking.items()}


def parse_progress(data: Any, decode: Callable[[str], Any]) -> Progress:
    """A progress.json as a Progress, its arch strings decodable by the run's space (`decode` raises a ValueError
    for one that is not an arch of it); RecordError (or the space's ValueError) otherwise."""
    progress = typed(Progress, data, "progress")
    check_seconds("progress", progress.seconds)
    archs = [*progress.ranking, *(a for table in progress.cache.values() for a in table)]
    for arch in archs:
        decode(arch)
    return progress


@dataclass
class TruthEntry:
    """One standalone training of the trained truth (evaluators/truth/trained.py), as its cache file holds it."""

    arch: str
    val_acc: float
    test_acc: float
    seconds: float
    n_images: int  # test images behind test_acc
    train: Optional[dict[str, Any]] = None  # the setup it was trained with (provenance; the file name hashes it)
    net: Optional[dict[str, Any]] = None
    seed: Optional[int] = None
    extras: Optional[dict[str, Any]] = None
    val_exit_acc: Optional[list[float]] = None  # multi-exit spaces: each classifier's accuracy
    test_exit_acc: Optional[list[float]] = None
    test_correct: Optional[str] = None  # per-test-image results, hex of packed bits

    def result(self) -> dict[str, Any]:
        """The training's result as trained.py hands it on (the fields it has)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_truth_entry(data: Any, arch: str, *, keep_correct: bool, multi_exit: bool) -> TruthEntry:
    """A trained-truth cache file as the TruthEntry of `arch`, with the per-image results when `keep_correct`
    asks for them and the exits' accuracies in a multi-exit space (RecordError otherwise)."""
    entry = typed(TruthEntry, data, "truth cache entry")
    if entry.arch != arch:
        raise RecordError(f"it is the entry of arch {entry.arch!r}, not of {arch!r}")
    for name in ("val_acc", "test_acc"):
        check_in_range(name, getattr(entry, name), 0.0, 100.0)
    check_cost("seconds", entry.seconds)
    check_cost("n_images", entry.n_images)
    for name in ("val_exit_acc", "test_exit_acc"):
        for i, acc in enumerate(getattr(entry, name) or []):
            check_in_range(f"{name}[{i}]", acc, 0.0, 100.0)
    if multi_exit and not entry.test_exit_acc:
        raise RecordError("it lacks test_exit_acc, which a multi-exit space's ranking needs")
    if keep_correct:
        hex_chars = 2 * math.ceil(entry.n_images / 8)
        if entry.test_correct is None:
            raise RecordError("it lacks test_correct, the per-image results a final training keeps")
        if len(entry.test_correct) != hex_chars or not _is_hex(entry.test_correct):
            raise RecordError(f"test_correct is not {hex_chars} hex digits (n_images={entry.n_images})")
    return entry


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def check_reference_sizes(data: Any, n: int) -> dict[str, list[float]]:
    """A references cache file: {"params": [...], "flops": [...]} with `n` finite counts >= 0 each."""
    if not isinstance(data, dict) or set(data) != {"params", "flops"}:
        raise RecordError("a references cache file is an object with exactly the keys params and flops")
    for name, values in data.items():
        if not isinstance(values, list) or len(values) != n:
            raise RecordError(f"{name} must be a list of {n} counts")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RecordError(f"{name}[{i}] is {v!r}, not a number")
            check_cost(f"{name}[{i}]", v)
    return data
