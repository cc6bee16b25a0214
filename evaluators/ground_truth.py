"""Ground-truth accuracy of architectures: tabular benchmarks where they exist, standalone training otherwise.

- nb201: NAS-Bench-201 / NATS-Bench-TSS 200-epoch test accuracy (CIFAR-10, CIFAR-100 or ImageNet16-120 column).
- mbnet_chain: NAS-Bench-Macro CIFAR-10 mean test accuracy over 3 trainings.
- darts_cell (and any space with truth=trained): each arch trained from scratch on the run's data under the
  budget, cached on disk by (arch, data hash, training config) so every method reuses the same numbers.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path
from typing import Optional

import pandas as pd
import torch
from tqdm.auto import tqdm

from oneshot_bench.atomic import read_json, write_json
from oneshot_bench.config import NetConfig, TrainConfig
from oneshot_bench.data import DataBundle
from oneshot_bench.errors import ConfigError, DataError
from oneshot_bench.training import train_standalone
from search_spaces.base import Arch, SearchSpace

DATA_DIR = Path(__file__).parent / "data"
NB201_CSV = DATA_DIR / "nb201_nats_tss_test200.csv"
MACRO_JSON = DATA_DIR / "nas_bench_macro_cifar10.json"
NB201_COLUMNS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
                 "imagenet16-120": "ImageNetTestAccuracy200Epochs"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class GroundTruth(ABC):
    kind: str

    @abstractmethod
    def accuracies(self, archs: list[Arch]) -> list[float]:
        """True accuracy (percent) of each arch, the reference for ranking metrics."""

    def final_accuracy(self, arch: Arch) -> dict:
        return {"test_acc": self.accuracies([arch])[0], "source": self.kind}

    @abstractmethod
    def describe(self) -> dict: ...


class _Table(GroundTruth):
    kind = "tabular"

    def __init__(self, space: SearchSpace, path: Path, metric: str):
        if not path.is_file():
            raise DataError(f"ground-truth file {path} is missing; reinstall the project or restore it from git.")
        self.space, self.path, self.metric = space, path, metric

    @cached_property
    def sha256(self) -> str:
        return sha256_file(self.path)

    @property
    @abstractmethod
    def table(self) -> dict[str, float]: ...

    def key(self, arch: Arch) -> str:
        return self.space.encode(arch)

    def accuracies(self, archs: list[Arch]) -> list[float]:
        return [self.table[self.key(a)] for a in archs]

    def all_accuracies(self) -> dict[str, float]:
        return dict(self.table)

    def describe(self) -> dict:
        return {"kind": self.kind, "file": self.path.name, "sha256": self.sha256, "metric": self.metric}


class NB201Table(_Table):
    def __init__(self, space: SearchSpace, dataset: str = "cifar10", path: Path = NB201_CSV):
        if dataset not in NB201_COLUMNS:
            raise ConfigError(f"unknown NB201 truth_dataset {dataset!r}. Valid: {', '.join(NB201_COLUMNS)}.")
        super().__init__(space, path, f"NB201 200-epoch test accuracy, {dataset} (mean over seeds)")
        self.column = NB201_COLUMNS[dataset]

    @cached_property
    def table(self) -> dict[str, float]:
        df = pd.read_csv(self.path, usecols=["ArchitectureString", self.column])
        return dict(zip(df["ArchitectureString"], df[self.column].astype(float), strict=True))


class MacroTable(_Table):
    def __init__(self, space: SearchSpace, path: Path = MACRO_JSON):
        super().__init__(space, path, "NAS-Bench-Macro CIFAR-10 test accuracy (mean of 3 trainings)")

    @cached_property
    def records(self) -> dict[str, dict]:
        with open(self.path) as f:
            return json.load(f)

    @cached_property
    def table(self) -> dict[str, float]:
        return {k: float(v["mean_acc"]) for k, v in self.records.items()}


class TrainedTruth(GroundTruth):
    """Standalone training under the budget; results cached as JSON files keyed by everything that affects them."""

    kind = "trained"

    def __init__(self, space: SearchSpace, data: DataBundle, net: NetConfig, train: TrainConfig, final: TrainConfig,
                 device: torch.device, seed: int, cache_dir: Path):
        self.space, self.data, self.net, self.train, self.final = space, data, net, train, final
        self.device, self.seed, self.cache_dir = device, seed, Path(cache_dir) / space.name

    def _key(self, arch: Arch, train: TrainConfig) -> str:
        spec = {"arch": self.space.encode(arch), "data": self.data.sha256, "res": self.data.resolution,
                "net": asdict(self.net), "train": asdict(train), "seed": self.seed, "space": self.space.name}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]

    def _train(self, arch: Arch, train: TrainConfig) -> dict:
        path = self.cache_dir / f"{self._key(arch, train)}.json"
        if path.is_file():
            return read_json(path)
        import time

        start = time.perf_counter()
        torch.manual_seed(self.seed)
        net = self.space.build_standalone(arch, self.net)
        accs = train_standalone(net, self.data, train, self.device, self.seed, desc="ground truth")
        result = {"arch": self.space.encode(arch), **accs, "seconds": time.perf_counter() - start,
                  "train": asdict(train), "net": asdict(self.net)}
        write_json(path, result)
        return result

    def accuracies(self, archs: list[Arch]) -> list[float]:
        return [self._train(a, self.train)["test_acc"] for a in tqdm(archs, desc="ground truth", leave=False)]

    def final_accuracy(self, arch: Arch) -> dict:
        r = self._train(arch, self.final)
        return {"test_acc": r["test_acc"], "val_acc": r["val_acc"], "source": "retrained", "seconds": r["seconds"]}

    def describe(self) -> dict:
        return {"kind": self.kind, "metric": "test accuracy after standalone training under the budget",
                "train": asdict(self.train), "final": asdict(self.final), "net": asdict(self.net),
                "cache": str(self.cache_dir), "data_sha256": self.data.sha256}


def ground_truth_for(space: SearchSpace, truth: str, truth_dataset: str, *, data: DataBundle, net: NetConfig,
                     train: TrainConfig, final: TrainConfig, device: torch.device, seed: int,
                     cache_dir: Path) -> GroundTruth:
    """truth='auto' picks the tabular benchmark of the space when there is one, else standalone training."""
    if truth not in ("auto", "tabular", "trained"):
        raise ConfigError(f"unknown truth {truth!r}. Valid choices: auto, tabular, trained.")
    tables = {"nb201": lambda: NB201Table(space, truth_dataset), "mbnet_chain": lambda: MacroTable(space)}
    if truth in ("auto", "tabular") and space.name in tables:
        return tables[space.name]()
    if truth == "tabular":
        raise ConfigError(f"space {space.name!r} has no tabular benchmark (spaces with one: {', '.join(tables)}); "
                          f"use truth=trained or truth=auto.")
    return TrainedTruth(space, data, replace(net), train, final, device, seed, cache_dir)


def table_quantile(truth: GroundTruth, q: float) -> Optional[float]:
    """Quantile of the true accuracy over the whole space (tabular truth only), e.g. the worst-decile bound."""
    if isinstance(truth, _Table):
        return float(pd.Series(list(truth.all_accuracies().values())).quantile(q))
    return None
