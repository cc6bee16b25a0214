"""NAS-Bench-201 / NATS-Bench-TSS: 200-epoch test accuracy of all 15,625 cells, for one of its three datasets."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from oneshot_bench.errors import ConfigError

from .base import TabularTruth, register_truth

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

    @property
    def metric(self) -> str:  # type: ignore[override]
        return f"NB201 200-epoch test accuracy, {self.params.dataset} (mean over seeds)"

    def load_table(self) -> dict[str, float]:
        column = COLUMNS[self.params.dataset]
        df = pd.read_csv(self.path, usecols=["ArchitectureString", column])
        return dict(zip(df["ArchitectureString"], df[column].astype(float), strict=True))
