"""What a ground-truth source is: the true accuracy of architectures, from a tabular benchmark or from training.

A source declares which spaces it covers, whether `truth=auto` picks it for a space, how many archs it covers
(checked when its table loads), its own typed parameters (`truth.params.<name>=`), and, when it covers only a
subset of a space, that subset (`arch_pool`): the shared ranking sample and the methods' own candidates are then
drawn from it, so every accuracy is a lookup.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch

from oneshot_bench.config import NetConfig, TrainConfig, TrainingExtras, params_to_dataclass
from oneshot_bench.data import DataBundle
from oneshot_bench.errors import ConfigError, DataError
from oneshot_bench.file_kinds import MISSING, kind_of
from oneshot_bench.registry import Registry
from oneshot_bench.safe_json import load_file
from oneshot_bench.training import NO_EXTRAS
from search_spaces.base import STANDALONE, Arch, SearchSpace

TRUTHS: Registry[GroundTruth] = Registry("truth", "evaluators.truth")
register_truth = TRUTHS.register
DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # shipped tables, with SOURCE.md


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class NoParams:
    pass


@dataclass
class TruthContext:
    """What a source that trains networks needs (tabular sources ignore it): the run's data, the final network
    size, the standalone and final training setups, the device, the seed and the cache folder."""

    data: DataBundle
    net: NetConfig
    train: TrainConfig
    final: TrainConfig
    device: torch.device
    seed: int
    cache_dir: Path


class GroundTruth(ABC):
    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    kind: ClassVar[str]  # "tabular" (a lookup) or "trained" (standalone training under the budget)
    spaces: ClassVar[Optional[frozenset[str]]] = None  # spaces it covers; None: any space with standalone nets
    default_for: ClassVar[frozenset[str]] = frozenset()  # spaces where truth=auto picks this source
    declared_archs: ClassVar[Optional[int]] = None  # distinct archs it covers, checked when it loads

    def __init__(self, space: SearchSpace, params: Optional[dict[str, Any]] = None, *, verify: bool = True) -> None:
        self.space = space
        self.ctx: Optional[TruthContext] = None
        self.params = params_to_dataclass(self.Params, dict(params or {}), f"truth {self.name!r}")
        self.verify = verify  # check shipped files against their pinned sha256 (False: an explicit, recorded opt-out)

    @classmethod
    def unsupported_reason(cls, space: SearchSpace) -> Optional[str]:
        if cls.spaces is not None and space.name not in cls.spaces:
            return f"it covers the space(s) {', '.join(sorted(cls.spaces))}"
        if cls.spaces is None and STANDALONE not in space.capabilities:
            return "it trains standalone networks, which the space cannot build"
        return None

    def bind(self, ctx: TruthContext) -> None:
        """Give the source the run's data and setup (called once the data is loaded; training sources need it)."""
        self.ctx = ctx

    def identity(self) -> dict[str, Any]:
        """What goes into a run's identity: the resolved source name, all its parameters, and the sha256 of the
        file it reads (None for training), so a changed table never returns a record made from another."""
        return {"name": self.name, "params": asdict(self.params), "sha256": self.file_sha256(),
                "verified": self.verify}

    def file_sha256(self) -> Optional[str]:
        return None

    @abstractmethod
    def accuracies(self, archs: list[Arch]) -> list[float]:
        """True accuracy (percent) of each arch, the reference for ranking metrics."""

    def final_accuracy(self, arch: Arch, *, seed_index: int = 0, extras: TrainingExtras = NO_EXTRAS,
                       net: Optional[NetConfig] = None) -> dict[str, Any]:
        """The found arch's final accuracy: test_acc (percent), source, n_images (test images behind it), and for a
        training source val_acc, seconds and `correct` (per-image results, hex of packed bits) for paired tests.
        `seed_index` picks one of several final trainings (Top-Best's seeds); `extras` are the protocol's
        final-training regularisers and `net` its final network (training sources only). A multi-exit space's
        result adds `anytime` (`oneshot_bench.exits.curve`)."""
        return {"test_acc": self.accuracies([arch])[0], "source": self.kind, "n_images": self.test_images}

    # test images behind a looked-up accuracy (the benchmark's test or validation split)
    test_images: ClassVar[int] = 0

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Provenance for the record: source name, kind, file and sha256 or training setup, metric."""

    def arch_pool(self) -> Optional[list[Arch]]:
        """The archs the source covers when it covers a subset of the space (None: any arch)."""
        return None

    def all_accuracies(self) -> Optional[dict[str, float]]:
        """Accuracy of every arch it covers (tabular sources), for space-wide quantiles."""
        return None

    def network(self) -> Optional[tuple[NetConfig, int]]:
        """(network size, image side) the accuracies were measured with, for a benchmark that trained its own
        networks; None when the truth trains on the run's data (the budget's final network)."""
        return None


class TabularTruth(GroundTruth):
    """A table shipped in evaluators/data: arch key -> accuracy, checked before use against the file's pinned sha256
    (evaluators/data/SOURCE.md), its declared size, numeric values in [0, 100], unique keys, and keys that are
    archs of the space."""

    kind = "tabular"
    file: ClassVar[str]  # name of the table under evaluators/data
    pinned_sha256: ClassVar[str]  # the file's sha256 as shipped (SOURCE.md)
    metric: ClassVar[str]  # what the accuracies are, in words

    @property
    def path(self) -> Path:
        return DATA_DIR / self.file

    def file_sha256(self) -> str:
        return self.sha256

    @cached_property
    def sha256(self) -> str:
        kind = kind_of(self.path)  # never opened unless a regular file (a FIFO would block, /dev/zero never ends)
        if kind is not None:
            state = "is missing" if kind == MISSING else f"is {kind}, not a regular file"
            raise DataError(f"ground-truth file {self.path} {state}; reinstall the project or restore it from git "
                            f"(git checkout -- evaluators/data/{self.file}).")
        sha = sha256_file(self.path)
        if self.verify and sha != self.pinned_sha256:
            raise DataError(f"ground-truth file {self.path} has sha256 {sha}, not the pinned {self.pinned_sha256} "
                            f"(evaluators/data/SOURCE.md): it was changed. Restore it (git checkout -- "
                            f"evaluators/data/{self.file}), or set truth.verify=false to use it as it is (the run's "
                            f"id and record then carry its sha256 and 'verified': false).")
        return sha

    @abstractmethod
    def load_table(self) -> dict[str, float]:
        """Read the file: arch key (`self.key(arch)`) -> accuracy in percent."""

    def key_is_valid(self, key: str) -> bool:
        """Whether a table key names an arch of the space (its canonical string)."""
        try:
            return self.space.encode(self.space.decode(key)) == key
        except (ValueError, TypeError):
            return False

    @cached_property
    def table(self) -> dict[str, float]:
        self.sha256  # noqa: B018 - verified before anything is read
        table = self.load_table()
        if self.declared_archs is not None and len(table) != self.declared_archs:
            raise DataError(f"ground-truth file {self.path} covers {len(table)} archs, not the {self.declared_archs} "
                            f"its source declares; restore the file from git.")
        bad_values = [(k, v) for k, v in table.items() if not (isinstance(v, float) and 0.0 <= v <= 100.0)]
        if bad_values:
            raise DataError(f"ground-truth file {self.path}: accuracy {bad_values[0][1]!r} of {bad_values[0][0]!r} is "
                            f"not a percentage ({len(bad_values)} such values); restore the file from git.")
        bad_keys = [k for k in table if not self.key_is_valid(k)]
        if bad_keys:
            raise DataError(f"ground-truth file {self.path}: {bad_keys[0]!r} is not an arch of space "
                            f"{self.space.name} ({len(bad_keys)} such keys); restore the file from git.")
        return table

    def key(self, arch: Arch) -> str:
        return self.space.encode(arch)

    def accuracies(self, archs: list[Arch]) -> list[float]:
        return [self.table[self.key(a)] for a in archs]

    def all_accuracies(self) -> dict[str, float]:
        return dict(self.table)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "file": self.file, "sha256": self.sha256,
                "sha256_verified": self.verify and self.sha256 == self.pinned_sha256, "metric": self.metric,
                "archs": len(self.table), "params": asdict(self.params)}


def unique_json(path: Path) -> Any:
    """The bounded JSON reader (oneshot_bench.safe_json) refusing duplicate keys (plain json keeps the last one
    silently)."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise DataError(f"ground-truth file {path} lists {key!r} twice; restore the file from git.")
            seen[key] = value
        return seen

    try:
        return load_file(path, object_pairs_hook=pairs)
    except ValueError as e:  # not JSON, or nested or sized past any table (safe_json's limits)
        raise DataError(f"ground-truth file {path} is not valid JSON ({e}); restore the file from git.") from None


def as_accuracy(value: Any, key: str, path: Path) -> float:
    """A table value as a float percentage, or a DataError naming the entry."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"ground-truth file {path}: the accuracy of {key!r} is {value!r}, not a number; restore the "
                        f"file from git.") from None
    return number


def auto_truth_name(space: str) -> str:
    """The source `truth=auto` picks for `space`: the one whose `default_for` names it, else standalone training."""
    return next((n for n in TRUTHS.names() if space in TRUTHS.get(n).default_for), "trained")


def resolve_truth(space: SearchSpace, name: str, params: Optional[dict[str, Any]] = None, *,
                  verify: bool = True) -> GroundTruth:
    """The source `name` for `space` (`auto`: the one whose `default_for` names the space, else standalone
    training), with its parameters validated; a source that does not cover the space is a clear error."""
    if name == "auto":
        name = auto_truth_name(space.name)
    cls = TRUTHS.get(name)
    reason = cls.unsupported_reason(space)
    if reason is not None:
        ok = [n for n in TRUTHS.names() if TRUTHS.get(n).unsupported_reason(space) is None]
        raise ConfigError(f"truth {name!r} does not cover space {space.name!r}: {reason}. Sources for "
                          f"{space.name}: auto, {', '.join(ok)}.")
    return cls(space, params, verify=verify)
