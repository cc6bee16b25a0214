"""NAS-Bench-Macro: CIFAR-10 test accuracy (mean of 3 trainings) of all 6,561 MobileNetV2-style chains."""
from __future__ import annotations

import json

from .base import TabularTruth, register_truth


@register_truth("nas_bench_macro")
class NASBenchMacroTruth(TabularTruth):
    spaces = frozenset({"mbnet_chain"})
    default_for = frozenset({"mbnet_chain"})
    declared_archs = 6561
    file = "nas_bench_macro_cifar10.json"
    metric = "NAS-Bench-Macro CIFAR-10 test accuracy (mean of 3 trainings)"

    def load_table(self) -> dict[str, float]:
        with open(self.path) as f:
            return {k: float(v["mean_acc"]) for k, v in json.load(f).items()}
