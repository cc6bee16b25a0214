"""NAS-Bench-Macro: CIFAR-10 test accuracy (mean of 3 trainings) of all 6,561 MobileNetV2-style chains."""
from __future__ import annotations

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import DataError

from .base import TabularTruth, as_accuracy, register_truth, unique_json


@register_truth("nas_bench_macro")
class NASBenchMacroTruth(TabularTruth):
    spaces = frozenset({"mbnet_chain"})
    default_for = frozenset({"mbnet_chain"})
    declared_archs = 6561
    file = "nas_bench_macro_cifar10.json"
    pinned_sha256 = "686dee8363cc21cca8c1f321ad5749454f2d9b9ca5972682e137e539bc522297"
    metric = "NAS-Bench-Macro CIFAR-10 test accuracy (mean of 3 trainings)"
    test_images = 10000

    def network(self) -> tuple[NetConfig, int]:
        return NetConfig(channels=32, cells_per_stage=1, num_classes=10, in_channels=3), 32

    def load_table(self) -> dict[str, float]:
        records = unique_json(self.path)
        if not isinstance(records, dict) or not all(isinstance(v, dict) and "mean_acc" in v for v in records.values()):
            raise DataError(f"ground-truth file {self.path} is not NAS-Bench-Macro's table; restore it from git.")
        return {k: as_accuracy(v["mean_acc"], k, self.path) for k, v in records.items()}
