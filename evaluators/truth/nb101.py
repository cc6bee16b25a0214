"""NAS-Bench-101 subset: the 108-epoch CIFAR-10 validation accuracy of the 292 distinct cells in NASLib's
500-record zero-cost file (evaluators/data/SOURCE.md). Records are pruned and keyed by NB101's graph hash, so any
arch that is the same network as a covered cell (after pruning, up to vertex relabeling) looks it up; records of
one cell (single runs up to 1.4 points apart) are averaged. The truth covers a subset of the space: the shared
ranking sample and the methods' own candidates are drawn from `arch_pool`."""
from __future__ import annotations

import ast
from functools import cached_property
from typing import Any

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import DataError
from search_spaces.base import Arch
from search_spaces.nb101 import Spec, arch_from_spec, is_valid_spec, prune, spec_hash, spec_of

from .base import TabularTruth, as_accuracy, register_truth, unique_json

OP_CODES = {0: "input", 1: "output", 2: "maxpool3x3", 3: "conv1x1-bn-relu", 4: "conv3x3-bn-relu"}  # NASLib's


@register_truth("nb101")
class NB101Truth(TabularTruth):
    spaces = frozenset({"nb101"})
    default_for = frozenset({"nb101"})
    declared_archs = 292  # distinct graph hashes (301 distinct pruned specs, 9 of them isomorphic to others)
    declared_records = 500
    test_images = 10000  # NB101's validation split
    file = "naslib_zc_nasbench101.json"
    pinned_sha256 = "c34840bc9af68b6ebaa7f052e42c1749a9a737d7243078be2a5548052bc5a0c2"
    metric = ("NB101 108-epoch CIFAR-10 validation accuracy, a 292-cell subset (NASLib's zero-cost file), mean of "
              "the records of each cell")

    @cached_property
    def specs(self) -> dict[str, tuple[Spec, list[float]]]:
        """Graph hash -> (the first record's pruned spec, every record's accuracy), in file order."""
        self.sha256  # noqa: B018 - verified before anything is read
        try:
            records = unique_json(self.path)["nasbench101"]["cifar10"]
        except (KeyError, TypeError):
            raise DataError(f"ground-truth file {self.path} is not NASLib's NB101 file; restore it from git.") from None
        if len(records) != self.declared_records:
            raise DataError(f"ground-truth file {self.path} has {len(records)} records, not {self.declared_records}; "
                            f"restore it from git.")
        out: dict[str, tuple[Spec, list[float]]] = {}
        for key, record in records.items():
            try:
                values = ast.literal_eval(key)
                matrix = [list(values[7 * i:7 * i + 7]) for i in range(7)]
                spec = prune(matrix, [OP_CODES[c] for c in values[49:]])
            except (ValueError, SyntaxError, KeyError, TypeError, IndexError):
                spec = None
            if not is_valid_spec(spec) or not isinstance(record, dict) or "val_accuracy" not in record:
                raise DataError(f"ground-truth file {self.path}: record {key} is not a valid NB101 cell with a "
                                f"val_accuracy; restore the file from git.")
            out.setdefault(spec_hash(spec), (spec, []))[1].append(as_accuracy(record["val_accuracy"], key, self.path))
        return out

    def load_table(self) -> dict[str, float]:
        return {h: sum(accs) / len(accs) for h, (_, accs) in self.specs.items()}

    def network(self) -> tuple[NetConfig, int]:
        return NetConfig(channels=128, cells_per_stage=3, num_classes=10, in_channels=3), 32

    def key_is_valid(self, key: str) -> bool:
        return key in self.specs  # keys are graph hashes this source computed

    def key(self, arch: Arch) -> str:
        spec = spec_of(tuple(arch))
        return spec_hash(spec) if is_valid_spec(spec) else "invalid"

    def accuracies(self, archs: list[Arch]) -> list[float]:
        keys = [self.key(a) for a in archs]
        missing = [self.space.encode(a) for a, k in zip(archs, keys, strict=True) if k not in self.table]
        if missing:
            raise ValueError(f"truth nb101 covers {len(self.table)} cells; {missing[0]} is not one of them")
        return [self.table[k] for k in keys]

    def arch_pool(self) -> list[Arch]:
        """One canonical arch per covered cell, in hash order (deterministic)."""
        self.table  # noqa: B018 - checks the declared counts first
        return [arch_from_spec(self.specs[h][0]) for h in sorted(self.specs)]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "records": self.declared_records, "subset_of": 423624}
