"""Build the HTML report from a results store alone: records -> tables + figures + provenance -> one HTML file."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from evaluators.ranking import degenerate_reason
from evaluators.record import RunRecord
from evaluators.transfer import load_transfer_records
from oneshot_bench.atomic import write_text

from . import REPORT_NAME
from . import formatting as fmt
from .bn_modes import MODES, build_mode_tables, views
from .comparison import REFERENCE_METHOD, SummaryRow, best_reference_text, compare
from .evidence import Evidence, setting_evidence
from .figures import Figure, setting_figures
from .headline import Headline, build_headline
from .metadata import RunMeta, VersionRow, run_metadata, version_table
from .paper_tables import PaperTable, build_tables
from .records import PHASES, load_records, points_frame, runs_frame
from .sweeps import StudyView, build_studies

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Setting:
    """One comparison: every method measured on the same space, data and budget."""

    id: str
    title: str
    rows: list[dict[str, str]]  # one per method run (references are in `summary`)
    summary: list[SummaryRow]  # one per method variant and reference, across seeds
    best_reference: str  # per seed, in words ("" without references)
    figures: list[Figure]
    evidence: Evidence  # what the runs support across training seeds (reports.evidence)
    headline: Headline  # the answer, at the top of the report
    plumbing_check: str  # why the setting's runs measure nothing ("" for a measurement)
    truth_note: str  # what the ground truth is, where a reader must know (surrogate predictions)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def anytime_text(run: pd.Series) -> str:
    """A multi-exit run's final accuracy is its last classifier's: the anytime AUC it is ranked by goes beside it,
    with the hand-designed baseline's under the same final training."""
    auc = run.get("final_anytime_auc", math.nan)
    if auc is None or math.isnan(auc):
        return ""
    base = run.get("baseline_anytime_auc", math.nan)
    return (f" (last classifier); anytime AUC {auc:.2f}"
            + ("" if base is None or math.isnan(base) else f", hand-designed baseline {base:.2f}"))


def method_table_row(run: pd.Series, degenerate: str = "") -> dict[str, str]:
    """The per-method table's cells for one run, formatted; keys are the data-metric names in the HTML. A
    degenerate ranking (`evaluators.ranking.degenerate_reason`) is labelled beside its correlations, whose 0.000
    is the policy's value, not a measurement."""
    row = {"run_id": run["run_id"], "method": run["variant"], "seed": str(run["seed"])}
    for phase in PHASES:
        row[f"{phase}_seconds"] = fmt.seconds(run[f"{phase}_seconds"])
    row.update(
        search_gpu_days=fmt.days(run["search_gpu_days"]), params=fmt.count(run["params"]),
        flops=fmt.count(run["flops"]), precision_at_top10pct=fmt.num(run["precision_at_top10pct"], 2),
        precision_at_5=fmt.num(run["precision_at_5"], 2),
        final_test_acc=fmt.num(run["final_test_acc"], 2) + (f" ± {run['final_test_acc_std']:.2f}"
                                                            if run["n_finalists"] > 1 else "") + anytime_text(run),
        final_test_acc_se=fmt.num(run["final_test_acc_se"], 2), final_source=run["final_source"],
        found_arch=run["found_arch"], n_ranked=str(run["n_ranked"]))
    for name in ("kendall_tau", "spearman_rho"):
        row[name] = fmt.with_ci(run[name], run[f"{name}_ci_low"], run[f"{name}_ci_high"])
        if degenerate:
            row[name] += f" ({degenerate})"
    return row


def build_settings(runs: pd.DataFrame, points: pd.DataFrame, records: list[RunRecord]) -> list[Setting]:
    settings = []
    by_id = {r.run_id: r for r in records}
    for title, group in runs.groupby("setting", sort=True):
        sid = slug(title)
        setting_records = [by_id[i] for i in group["run_id"]]
        comparison = compare(setting_records)
        methods = group[group["method"] != REFERENCE_METHOD]
        rows = [method_table_row(r, degenerate_reason(by_id[r["run_id"]].ranking.proxy,
                                                      by_id[r["run_id"]].ranking.truth))
                for _, r in methods.sort_values(["method", "variant", "seed"]).iterrows()]
        method_points = points[(points["setting"] == title) & (points["method"] != REFERENCE_METHOD)]
        figures = setting_figures(methods, method_points, comparison, sid) if len(methods) else []
        plumbing = "; ".join(sorted({r.plumbing_check for r in setting_records if r.plumbing_check}))
        surrogate = sorted({r.hashes.truth.get("metric", "") for r in setting_records
                            if r.hashes.truth.get("surrogate")})
        resamples = max(int(r.config.get("budget", {}).get("bootstrap_resamples", 1000)) for r in setting_records)
        evidence = setting_evidence(comparison.entries, resamples=resamples)
        settings.append(Setting(id=f"setting-{sid}", title=title, rows=rows, summary=comparison.rows,
                                best_reference=best_reference_text(comparison), figures=figures,
                                evidence=evidence,
                                headline=build_headline(f"setting-{sid}", title, comparison.entries, evidence,
                                                        plumbing),
                                plumbing_check=plumbing,
                                truth_note=(f"Ground truth: {'; '.join(surrogate)}. These are a surrogate model's "
                                            f"predictions, not trained accuracies." if surrogate else "")))
    return settings


def render(context: dict[str, Any]) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(**context)


def build_report(results_dir: str | Path, out_dir: str | Path, title: str = "oneshot-bench report") -> Path:
    """Write `<out_dir>/report.html` from the finished records under `results_dir`; returns its path."""
    records = load_records(results_dir)
    runs, points = runs_frame(records), points_frame(records)
    settings = build_settings(runs, points, records) if records else []
    tables: list[PaperTable] = build_tables(runs, records=records, transfers=load_transfer_records(results_dir))
    meta: list[RunMeta] = run_metadata(records)
    versions: list[VersionRow] = version_table(records)
    studies: list[StudyView] = build_studies(results_dir)
    html = render(dict(title=title, results_dir=str(Path(results_dir).resolve()), n_records=len(records),
                       generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       settings=settings, tables=tables, meta=meta, versions=versions, studies=studies,
                       bn_modes=views(build_mode_tables(records)), bn_mode_names=MODES))
    path = Path(out_dir) / REPORT_NAME
    write_text(path, html)  # atomic: a reader (or a Ctrl-C) never leaves half a report, nor a stray temporary file
    return path
