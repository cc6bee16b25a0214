"""NAS-Bench-201 / NATS-Bench-TSS: 200-epoch test accuracy of all 15,625 cells, for one of its three datasets."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ConfigError, DataError

from .base import TabularTruth, as_accuracy, register_truth

COLUMNS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
           "imagenet16-120": "ImageNetTestAccuracy200Epochs"}


@dataclass
class NB201Params:
    dataset: str = "cifar10"  # which column is the truth: cifar10 | cifar100 | imagenet16-120

    def __post_init__(self) -> None:
        if self.dataset not in COLUMNS:
            raise ConfigError(f"truth.params.dataset={self.dataset!r} is not an NB201 dataset. Valid: "
                              f"{', '.join(COLUMNS)}.")


@register_truth("nb201")
class NB201Truth(TabularTruth):
    Params = NB201Params
    spaces = frozenset({"nb201"})
    default_for = frozenset({"nb201"})
    declared_archs = 15625
    file = "nb201_nats_tss_test200.csv"
    pinned_sha256 = "cb5d777ec3368be83c8f9b3aa4d520696051cb0eb8d94b8f85b519f9ea4afa3e"

    @property
    def metric(self) -> str:  # type: ignore[override]
        return f"NB201 200-epoch test accuracy, {self.params.dataset} (mean over seeds)"

    @property
    def test_images(self) -> int:  # type: ignore[override]
        # CIFAR-10's test set; NB201 splits CIFAR-100's and ImageNet16-120's test sets into valid and test halves
        return {"cifar10": 10000, "cifar100": 5000, "imagenet16-120": 3000}[self.params.dataset]

    def network(self) -> tuple[NetConfig, int]:
        classes, side = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet16-120": (120, 16)}[self.params.dataset]
        return NetConfig(channels=16, cells_per_stage=5, num_classes=classes, in_channels=3), side

    def load_table(self) -> dict[str, float]:
        column = COLUMNS[self.params.dataset]
        try:
            df = pd.read_csv(self.path, usecols=["ArchitectureString", column])
        except (ValueError, pd.errors.ParserError) as e:
            raise DataError(f"ground-truth file {self.path} is not the NB201 table ({e}); restore it from "
                            f"git.") from None
        duplicated = df["ArchitectureString"][df["ArchitectureString"].duplicated()]
        if len(duplicated):
            raise DataError(f"ground-truth file {self.path} lists {duplicated.iloc[0]!r} more than once; restore it "
                            f"from git.")
        return {k: as_accuracy(v, k, self.path) for k, v in zip(df["ArchitectureString"], df[column], strict=True)}
