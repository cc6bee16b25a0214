"""NAS-Bench-301 subset for the darts_cell space: the NAS-Bench-301 SURROGATE model's predicted CIFAR-10 validation
accuracy of the 725 DARTS cells in NASLib's zero-cost file (evaluators/data/SOURCE.md). These are predictions of a
model fitted to ~60k trainings (Siems et al. 2020; 32 initial channels, 8 cells, 100 epochs), not measurements of
these cells: the record and the report say so. The truth covers a subset of the space: the shared ranking sample
and the methods' own candidates are drawn from `arch_pool`, so every accuracy is a lookup.

NASLib's key is the "compact" genotype `[[normal: 8 x (input, op)], [reduce: 8 x (input, op)]]`, pairs 2k and 2k+1
feeding intermediate node k, with NASLib's op order (max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3,
sep_conv_5x5, dil_conv_3x3, dil_conv_5x5), which is darts_cell's OPS order; each node's two inputs are distinct,
so every key is one canonical darts_cell arch (725 distinct)."""
from __future__ import annotations

import ast
from functools import cached_property
from typing import Any, Optional

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import DataError
from search_spaces.base import Arch, SearchSpace

from .base import TabularTruth, as_accuracy, register_truth, unique_json

NUM_ARCHS_DARTS = 10**18  # NAS-Bench-301's "about 10^18" DARTS cells


@register_truth("nb301")
class NB301Truth(TabularTruth):
    spaces = frozenset({"darts_cell"})
    default_for: frozenset[str] = frozenset()  # darts_cell keeps standalone training by default: truth=nb301 opts in

    @classmethod
    def unsupported_reason(cls, space: SearchSpace) -> Optional[str]:
        reason = super().unsupported_reason(space)
        if reason is None and getattr(space, "nodes", 4) != 4:
            return (f"NAS-Bench-301's cells have 4 intermediate nodes, and space.params.nodes={space.nodes}; use "
                    f"truth=trained for other node counts")
        return reason
    declared_archs = 725
    test_images = 10000  # nominal: a surrogate prediction has no binomial error; its own error is larger
    file = "naslib_zc_nasbench301.json"
    pinned_sha256 = "537e9abd6f0b14fdffdfcb3c07b18a037647b5c80808b3b2cf9a51b1b491aba1"
    metric = ("NAS-Bench-301 surrogate-PREDICTED CIFAR-10 validation accuracy (not measured), a 725-cell subset "
              "(NASLib's zero-cost file)")

    @cached_property
    def records(self) -> dict[str, dict[str, Any]]:
        self.sha256  # noqa: B018 - verified before anything is read
        try:
            records = unique_json(self.path)["cifar10"]
        except (KeyError, TypeError):
            raise DataError(f"ground-truth file {self.path} is not NASLib's NB301 file; restore it from git.") from None
        if not isinstance(records, dict):
            raise DataError(f"ground-truth file {self.path} is not NASLib's NB301 file; restore it from git.")
        return records

    def arch_of(self, key: str) -> Arch:
        """A NASLib compact genotype string as a darts_cell arch (DataError naming the key if it is not one)."""
        try:
            cells = ast.literal_eval(key)
            nodes = [(tuple(cell[2 * k]), tuple(cell[2 * k + 1])) for cell in cells for k in range(4)]
            if len(cells) != 2 or any(len(cell) != 8 for cell in cells):
                raise ValueError(key)
            return self.space.decode(self.space.encode(tuple(v for node in nodes for gene in sorted(node)
                                                             for v in gene)))
        except (ValueError, SyntaxError, TypeError, IndexError):
            raise DataError(f"ground-truth file {self.path}: {key!r} is not a DARTS genotype of two cells with 8 "
                            f"(input, op) pairs each and two distinct inputs per node; restore the file from "
                            f"git.") from None

    def load_table(self) -> dict[str, float]:
        table: dict[str, float] = {}
        for key, record in self.records.items():
            if not isinstance(record, dict) or "val_accuracy" not in record:
                raise DataError(f"ground-truth file {self.path}: record {key} has no val_accuracy; restore the file "
                                f"from git.")
            canonical = self.space.encode(self.arch_of(key))
            if canonical in table:
                raise DataError(f"ground-truth file {self.path}: {key!r} is the same cell as an earlier record; "
                                f"restore the file from git.")
            table[canonical] = as_accuracy(record["val_accuracy"], key, self.path)
        return table

    def network(self) -> tuple[NetConfig, int]:
        # NB301's training network: 32 initial channels, 8 cells (3N + 2 with N = 2), 32 px
        return NetConfig(channels=32, cells_per_stage=2, num_classes=10, in_channels=3), 32

    def accuracies(self, archs: list[Arch]) -> list[float]:
        keys = [self.key(a) for a in archs]
        missing = [k for k in keys if k not in self.table]
        if missing:
            raise ValueError(f"truth nb301 covers {len(self.table)} cells; {missing[0]} is not one of them")
        return [self.table[k] for k in keys]

    def arch_pool(self) -> list[Arch]:
        """The covered cells in the file's order (deterministic)."""
        return [self.space.decode(k) for k in self.table]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "surrogate": True, "subset_of": NUM_ARCHS_DARTS,
                "caveat": "NAS-Bench-301 surrogate predictions (Siems et al. 2020), not trained accuracies"}
