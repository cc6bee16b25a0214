"""The scoring-BN-mode table: how each supernet method's ranking depends on how BatchNorm is set while it scores,
per training seed, with the across-seed verdict between modes.

A run with `scoring.also_bn_modes` scored the shared sample under its own mode and, from the same trained weights,
under each listed mode (extra proxies "bn:<mode>"), so the modes of one seed are paired twice over: same weights,
same archs. The verdict between two modes is the paired t-test over training seeds of `evaluators.verdict`, one
family (Benjamini-Hochberg) per table: every mode pair of every method, plus each pair pooled over every method's
runs (a training run is the unit: methods train independently).

    python -m reports.bn_modes --results results/measured/nb201_weight_sharing_bn_modes --out <file.md>
"""
from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from evaluators.record import RunRecord
from evaluators.verdict import FAMILY_TEXT, SeedValue, Verdict, adjust_family, differences_over_seeds
from oneshot_bench.config import BnMode

from .records import load_records, settings_of, variant_params

MODES = [str(m) for m in BnMode]
LEGACY = "recalibrate_all"
EXTRA_PREFIX = "bn:"
POOLED = "every method"


@dataclass
class ModeCell:
    """One run's Kendall tau under one mode, with its arch-sample 95% CI."""

    tau: float
    low: float
    high: float


@dataclass
class MethodModes:
    """One method of one setting: its runs' taus per mode and seed, and the free reference's per seed."""

    method: str
    primary: str  # the mode the method's own ranking (and search) used
    taus: dict[str, dict[int, ModeCell]] = field(default_factory=dict)  # mode -> seed -> tau
    reference: dict[int, tuple[str, float]] = field(default_factory=dict)  # seed -> (name, tau) of the best one

    def mean(self, mode: str) -> tuple[float, float, int]:
        values = [c.tau for c in self.taus.get(mode, {}).values()]
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        return (statistics.fmean(values) if values else math.nan), sd, len(values)


@dataclass
class ModeVerdict:
    method: str  # or POOLED
    a: str
    b: str
    verdict: Verdict


@dataclass
class ModeTable:
    setting: str
    methods: list[MethodModes]
    verdicts: list[ModeVerdict]


def mode_taus(record: RunRecord) -> dict[str, ModeCell]:
    """A run's tau per scoring mode: its own ranking's under its mode, and each extra "bn:<mode>" proxy's."""
    out = {}
    if record.bn_mode is not None:
        r = record.ranking
        out[record.bn_mode] = ModeCell(r.kendall_tau, r.kendall_tau_ci_low, r.kendall_tau_ci_high)
    for name, extra in record.ranking.extra_proxies.items():
        if name.startswith(EXTRA_PREFIX):
            out[name[len(EXTRA_PREFIX):]] = ModeCell(extra.kendall_tau, extra.kendall_tau_ci_low,
                                                     extra.kendall_tau_ci_high)
    return out


def method_label(record: RunRecord) -> str:
    """The method with its non-default hyperparameters (DARTS order=2 is not order=1), without the BN mode: the
    modes are this table's columns."""
    changed = variant_params(record.method, record.method_params)
    return record.method + (f" ({', '.join(f'{k}={v}' for k, v in changed.items())})" if changed else "")


def build_mode_tables(records: list[RunRecord]) -> list[ModeTable]:
    """One table per setting (space, data, budget values, truth: the report's settings) whose runs scored more than
    one BN mode; one line per method variant and own mode, so that runs of different configurations or protocols
    never share a cell."""
    by_setting: dict[str, dict[str, MethodModes]] = defaultdict(dict)
    settings = settings_of(records)
    for record in sorted(records, key=lambda r: (r.method, r.seed)):
        cells = mode_taus(record)
        if len(cells) < 2:
            continue
        label = method_label(record) + ("" if record.bn_mode is None else f" [own: {record.bn_mode}]")
        entry = by_setting[settings[record.run_id]].setdefault(label, MethodModes(label, record.bn_mode))
        if any(record.seed in entry.taus.get(mode, {}) for mode in cells):
            raise ValueError(f"two runs of {label}, seed {record.seed}, in {settings[record.run_id]}: "
                             f"{record.run_id} and another; give one store per configuration")
        for mode, cell in cells.items():
            entry.taus.setdefault(mode, {})[record.seed] = cell
        best = record.ranking.best_reference()
        if best is not None:
            entry.reference[record.seed] = (best[0], best[1].kendall_tau)
    tables = []
    for setting, methods in sorted(by_setting.items()):
        verdicts = []
        for a, b in itertools.combinations(MODES, 2):
            pooled: list[SeedValue] = []
            for m in methods.values():
                seeds = sorted(set(m.taus.get(a, {})) & set(m.taus.get(b, {})))
                diffs = [SeedValue(s, m.taus[a][s].tau - m.taus[b][s].tau) for s in seeds]
                if diffs:
                    verdicts.append(ModeVerdict(m.method, a, b, differences_over_seeds(diffs)))
                    unit = len(pooled)
                    pooled += [SeedValue(unit + i, d.value) for i, d in enumerate(diffs)]
            if len(methods) > 1 and pooled:
                verdicts.append(ModeVerdict(POOLED, a, b, differences_over_seeds(pooled)))
        adjust_family([v.verdict for v in verdicts])
        tables.append(ModeTable(setting, sorted(methods.values(), key=lambda m: m.method), verdicts))
    return tables


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:+.{digits}f}"


def verdict_text(v: ModeVerdict) -> str:
    d = v.verdict
    if d.winner == "a":
        text = f"**{v.a} ranks better than {v.b}**: {d.interval_text()}"
    elif d.winner == "b":
        text = (f"**{v.b} ranks better than {v.a}**: {_fmt(-d.mean_difference)} [{_fmt(-d.ci_high)}, "
                f"{_fmt(-d.ci_low)}] over {d.n} seeds")
    else:
        text = f"{v.a} − {v.b}: {d.interval_text()}, {d.status_text()}"
    if v.method == POOLED:  # its units are training runs (every method's seeds), not seeds of one method
        text = text.replace(" seeds per method", " training runs").replace(" seeds", " training runs")
    return text


def _cell(value: str, detail: str, own: bool) -> dict[str, object]:
    """One table cell: its value (a tau, or a mean), the detail after it (a CI, or ± sd (n)), whether the mode is
    the method's own, and the two joined as the HTML shows them."""
    return {"value": value, "detail": detail, "own": own, "text": f"{value} {detail}".strip()}


def table_rows(m: MethodModes) -> list[dict[str, object]]:
    """The method's lines: one per seed (each mode's tau with its CI), then mean ± sd over seeds; with the best
    free reference's tau on the same sample."""
    rows: list[dict[str, object]] = []
    for s in sorted({s for cells in m.taus.values() for s in cells}):
        cells = []
        for mode in MODES:
            c = m.taus.get(mode, {}).get(s)
            cells.append(_cell("—", "", mode == m.primary) if c is None
                         else _cell(f"{c.tau:+.3f}", f"[{c.low:+.2f}, {c.high:+.2f}]", mode == m.primary))
        ref = m.reference.get(s)
        rows.append({"method": m.method, "seed": str(s), "cells": cells, "is_mean": False,
                     "reference": f"{ref[0]} {ref[1]:+.3f}" if ref else "—"})
    cells = []
    for mode in MODES:
        mean, sd, n = m.mean(mode)
        cells.append(_cell("—", "", mode == m.primary) if n == 0
                     else _cell(f"{mean:+.3f}", f"± {0 if math.isnan(sd) else sd:.3f} ({n})", mode == m.primary))
    refs = [v for _, v in m.reference.values()]
    rows.append({"method": m.method, "seed": "mean ± sd", "cells": cells, "is_mean": True,
                 "reference": f"{statistics.fmean(refs):+.3f}" if refs else "—"})
    return rows


def sorted_verdicts(t: ModeTable) -> list[ModeVerdict]:
    """The pooled verdicts first, then each method's, mode pairs in BnMode's order."""
    return sorted(t.verdicts, key=lambda v: (v.method != POOLED, v.method, MODES.index(v.a), MODES.index(v.b)))


def _markdown_cell(cell: dict[str, object], is_mean: bool) -> str:
    """A mean in bold; a seed's tau starred where the mode is the method's own."""
    if cell["value"] == "—":
        return "—"
    if is_mean:
        return f"**{cell['value']}** {cell['detail']}"
    return f"{cell['value']}{'*' if cell['own'] else ''} {cell['detail']}"


def to_markdown(tables: list[ModeTable]) -> str:
    lines = ["# Scoring BN modes: Kendall tau of each supernet method's ranking under each mode", "",
             "Each training run scored its shared sample under every mode from the same weights "
             "(`scoring.also_bn_modes`); a cell is that seed's tau with its 95% arch-sample CI. Modes "
             "(`methods/bn_scoring.py`): recalibrate_all = reset every BN and re-estimate (this harness' protocol "
             "before issue 28, and SPOS'); recalibrate_choice = re-estimate only the BNs inside the choice points; "
             "batch_stats_choice = those BNs on batch statistics (NAS-Bench-201's track_running_stats=False); "
             "running = every BN on its trained statistics. The method's own mode (its search and its report "
             "rows) is marked *.", "",
             f"Verdicts: paired t-test over training seeds of the per-seed tau differences; one family per table "
             f"({FAMILY_TEXT}); the pooled rows treat each training run of every method as one unit.", ""]
    for t in tables:
        lines += [f"## {t.setting}", "", "| method | seed | " + " | ".join(MODES) + " | best free reference |",
                  "|---|---|" + "---|" * len(MODES) + "---|"]
        for m in t.methods:
            for row in table_rows(m):
                seed = "mean ± sd (seeds)" if row["is_mean"] else row["seed"]
                cells = [_markdown_cell(c, bool(row["is_mean"])) for c in row["cells"]]
                lines.append(f"| {m.method} | {seed} | " + " | ".join(cells) + f" | {row['reference']} |")
        lines += ["", "Between modes, across seeds:", ""]
        lines += [f"- {v.method}: {verdict_text(v)}" for v in sorted_verdicts(t)]
        lines.append("")
    if not tables:
        lines.append("No run in this store scored more than one BN mode (run with `scoring.also_bn_modes=[...]`).")
    return "\n".join(lines) + "\n"


@dataclass
class ModeTableView:
    """A ModeTable formatted for the HTML report."""

    id: str
    setting: str
    rows: list[dict[str, object]]  # method, seed, cells (one per mode), reference, is_mean
    verdicts: list[str]


def views(tables: list[ModeTable]) -> list[ModeTableView]:
    return [ModeTableView(f"bn-modes-{i}", t.setting, [row for m in t.methods for row in table_rows(m)],
                          [f"{v.method}: {verdict_text(v).replace('**', '')}" for v in sorted_verdicts(t)])
            for i, t in enumerate(tables)]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.bn_modes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, action="append",
                        help="a results store (repeatable: stores are merged)")
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: print it)")
    args = parser.parse_args(argv)
    records = []
    for store in args.results:
        if not store.is_dir():
            print(f"error: --results {store}: no such folder; give a results store (results/measured/<store>).",
                  file=sys.stderr)
            return 2
        records += load_records(store)
    text = to_markdown(build_mode_tables(records))
    if args.out is None:
        print(text, end="")
        return 0
    from oneshot_bench.atomic import write_text

    write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from oneshot_bench.interrupts import run_command

    sys.exit(run_command(main))
