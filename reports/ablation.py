"""An ablation table's comparison column: each variant's Kendall tau against the table's baseline variant, decided
across training seeds (evaluators.verdict), one family per table.

- `paired_kendall` (the table's `paired_baseline`: the baseline's method params): the variant and the baseline ranked
  the same seed's shared sample, so the pair is compared seed by seed (paired t-test over seeds). Each seed's
  paired bootstrap interval over the archs (evaluators.paired) stays in the cell as detail, labelled as one training
  run's arch-sample uncertainty.
- `unpaired_kendall` (the table's `unpaired_baseline`: the baseline's method params and space params): variants that
  are other spaces (darts_cell with 2, 3 or 5 nodes) rank other samples, so the two sides' seeds are compared as two
  groups (Welch's t-test over seeds).
The variants of one table are one family (Benjamini-Hochberg); fewer than 3 seeds on a side give no verdict, and
the cell says why and how many seeds a difference of the observed size would need.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

from evaluators.paired import tau_difference
from evaluators.record import RunRecord
from evaluators.verdict import SeedValue, Verdict, adjust_family, paired_over_seeds, unpaired_over_seeds

from . import formatting as fmt
from .evidence import PER_SEED_LABEL
from .records import variant_params

# column metric -> the table key that names its baseline
COMPARISON_METRICS = {"paired_kendall": "paired_baseline", "unpaired_kendall": "unpaired_baseline"}
PER_SEED_DETAIL = f"per seed, {PER_SEED_LABEL}"


@dataclass
class VariantComparison:
    verdict: Optional[Verdict] = None
    detail: list[str] = field(default_factory=list)
    is_baseline: bool = False
    missing: str = ""  # why there is nothing to compare


def _key(group: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted(group["run_id"]))


class TableComparisons:
    """The comparison cells of one ablation table: every measured group of runs against the baseline's runs."""

    def __init__(self, table: dict[str, Any], runs: pd.DataFrame, records: dict[str, RunRecord],
                 groups: Iterable[pd.DataFrame]):
        self.table, self.runs, self.records = table, runs, records
        self.paired = "paired_baseline" in table
        self.comparisons = {_key(g): self._compare(g) for g in groups}
        adjust_family([c.verdict for c in self.comparisons.values() if c.verdict is not None])

    def _baseline_runs(self, run: pd.Series) -> pd.DataFrame:
        spec = self.table["paired_baseline" if self.paired else "unpaired_baseline"] or {}
        wanted = variant_params(run["method"], spec.get("params") or {})
        space_params = run["space_params"] if self.paired else dict(spec.get("space_params") or {})
        r = self.runs
        hit = ((r["method"] == run["method"]) & (r["space"] == run["space"]) & (r["data"] == run["data"])
               & (r["truth"] == run["truth"]) & (r["budget"] == run["budget"])
               & r["space_params"].map(space_params.__eq__) & r["variant_params"].map(wanted.__eq__))
        if self.paired:
            hit &= r["setting"] == run["setting"]
        return r[hit]

    def _compare(self, group: pd.DataFrame) -> VariantComparison:
        first = group.iloc[0]
        baseline = self._baseline_runs(first)
        if set(group["run_id"]) <= set(baseline["run_id"]):
            return VariantComparison(is_baseline=True)
        if baseline.empty:
            return VariantComparison(missing="no baseline run in this store")
        return self._paired(group, baseline) if self.paired else self._unpaired(group, baseline)

    def _paired(self, group: pd.DataFrame, baseline: pd.DataFrame) -> VariantComparison:
        mine, theirs, detail = [], [], []
        for _, run in group.sort_values("seed").iterrows():
            base = baseline[baseline["seed"] == run["seed"]]
            a = self.records.get(run["run_id"])
            b = self.records.get(base["run_id"].iloc[0]) if len(base) else None
            if a is None or b is None or a.ranking.archs != b.ranking.archs:
                detail.append(f"s{run['seed']}: no baseline run on its sample")
                continue
            d = tau_difference(a.ranking.proxy, b.ranking.proxy, a.ranking.truth, seed=int(run["seed"]))
            detail.append(f"s{run['seed']}: {d.difference:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]")
            mine.append(SeedValue(int(run["seed"]), a.ranking.kendall_tau))
            theirs.append(SeedValue(int(run["seed"]), b.ranking.kendall_tau))
        if not mine:
            return VariantComparison(detail=detail, missing="no baseline run on the same samples")
        return VariantComparison(paired_over_seeds(mine, theirs), detail)

    def _unpaired(self, group: pd.DataFrame, baseline: pd.DataFrame) -> VariantComparison:
        mine = [SeedValue(int(r["seed"]), float(r["kendall_tau"])) for _, r in group.sort_values("seed").iterrows()]
        theirs = [SeedValue(int(r["seed"]), float(r["kendall_tau"]))
                  for _, r in baseline.sort_values("seed").iterrows()]
        detail = [f"this variant {fmt.mean_std([v.value for v in mine])}, the baseline "
                  f"{fmt.mean_std([v.value for v in theirs])} (different samples: no per-seed pairing)"]
        return VariantComparison(unpaired_over_seeds(mine, theirs), detail)

    def cell_text(self, group: pd.DataFrame) -> str:
        c = self.comparisons.get(_key(group))
        if c is None:
            return "—"
        if c.is_baseline:
            return "— (the baseline)"
        if c.verdict is None:
            return f"— ({c.missing})" + (f"; {'; '.join(c.detail)}" if c.detail else "")
        v = c.verdict
        status = v.status_text(better="better than the baseline across seeds",
                               worse="worse than the baseline across seeds")
        tested = f" (adjusted p = {v.p_adjusted:.3g}, {v.family_size} variant(s) in the family)" if v.tested else ""
        label = PER_SEED_DETAIL if self.paired else "per side"
        return f"{v.interval_text()}: {status}{tested}. {label.capitalize()}: {'; '.join(c.detail)}"
