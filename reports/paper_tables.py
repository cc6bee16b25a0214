"""Published tables (reports/data/paper_tables.yaml) regenerated beside our measurements.

Every value cell carries its origin: "paper" (copied from the publication, as printed) or "measured" (the mean over
seeds of our records, with the budget and device it was measured under). A paper row whose method has no record
gets a "not run" row holding the command that would produce it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

from . import formatting as fmt
from .records import variant_params

PAPER_TABLES = Path(__file__).parent / "data" / "paper_tables.yaml"

# measured quantity -> formatter; the keys are columns of records.runs_frame
MEASURED_METRICS: dict[str, Callable[[Any], str]] = {
    "search_gpu_days": fmt.days,
    "search_seconds": fmt.seconds,
    "params_m": lambda x: fmt.num(x, 3),
    "final_test_acc": lambda x: fmt.num(x, 2),
    "pearson_all": lambda x: fmt.num(x, 2),
    "pearson_top_half": lambda x: fmt.num(x, 2),
    "kendall_all": lambda x: fmt.num(x, 2),
    "kendall_top_half": lambda x: fmt.num(x, 2),
}


@dataclass
class Cell:
    text: str
    origin: str  # "paper" | "measured" | "none"
    note: str = ""


@dataclass
class Row:
    label: str
    origin: str  # "paper" | "measured" | "not run" | "no counterpart"
    cells: list[Cell]
    budget: str = ""  # how the measured numbers were obtained (budget, device, seeds)
    command: str = ""  # for "not run": what would produce the measurement
    run_ids: list[str] = field(default_factory=list)


@dataclass
class PaperTable:
    id: str
    title: str
    citation: str
    url: str
    where: str
    columns: list[str]
    rows: list[Row]


def load_specs(path: Path = PAPER_TABLES) -> dict[str, Any]:
    with open(path) as f:
        spec = yaml.safe_load(f)
    for table in spec["tables"]:
        if table["source"] not in spec["sources"]:
            raise ValueError(f"{path}: table {table['id']} cites unknown source {table['source']!r}")
        for col in table["columns"]:
            if col["metric"] not in MEASURED_METRICS:
                raise ValueError(f"{path}: unknown metric {col['metric']!r}. Valid: {sorted(MEASURED_METRICS)}")
    return spec


def method_is_configured(method: str) -> bool:
    """Whether `method=<name>` can be run: the installed registry has it (names never resolve as paths)."""
    from methods import METHODS

    return method in METHODS.names()


def run_command(method: str, params: dict[str, Any], setting: dict[str, str], budget: str) -> str:
    extra = "".join(f" method.params.{k}={v}" for k, v in params.items())
    return f"python run.py method={method} space={setting['space']} data={setting['data']} budget={budget}{extra}"


def _matching_runs(runs: pd.DataFrame, method: str, params: dict[str, Any], setting: dict[str, str]) -> pd.DataFrame:
    if runs.empty:
        return runs
    hit = (runs["method"] == method) & (runs["space"] == setting["space"]) & (runs["data"] == setting["data"])
    # exactly the row's configuration: the row's params on top of the method's defaults, so that ablation runs
    # (other hyperparameters changed) are never averaged into a paper table's row
    wanted = variant_params(method, params)
    hit &= runs["variant_params"].map(lambda p: p == wanted)
    return runs[hit]


def _paper_row(row: dict[str, Any], columns: list[dict[str, Any]]) -> Row:
    values, notes = row.get("paper") or {}, row.get("notes") or {}
    cells = []
    for col in columns:
        value = values.get(col["key"])
        cells.append(Cell(text="—" if value is None else str(value), origin="paper",
                          note=notes.get(col["key"], "not reported" if value is None else "")))
    return Row(label=row["label"], origin="paper", cells=cells)


def _measured_rows(label: str, runs: pd.DataFrame, columns: list[dict[str, Any]]) -> list[Row]:
    """One row per (budget, device) the method was measured under; values are means over seeds."""
    out = []
    for (_, device), group in runs.groupby(["budget", "device"], sort=True):
        cells = [Cell(text=fmt.mean_std(group[col["metric"]].tolist(), MEASURED_METRICS[col["metric"]]),
                      origin="measured") for col in columns]
        seeds = sorted(group["seed"].tolist())
        desc = group["budget_desc"].iloc[0]
        out.append(Row(label=label, origin="measured", cells=cells, run_ids=group["run_id"].tolist(),
                       budget=f"{desc}; {device}; seeds {', '.join(map(str, seeds))}"))
    return out


def _placeholder_row(label: str, origin: str, columns: list[dict[str, Any]], budget: str = "",
                     command: str = "") -> Row:
    return Row(label=label, origin=origin, cells=[Cell("—", "none") for _ in columns], budget=budget, command=command)


def _counterpart_key(row: dict[str, Any]) -> tuple:
    return (row.get("method"), tuple(sorted((row.get("params") or {}).items())))


def build_table(spec: dict[str, Any], table: dict[str, Any], runs: pd.DataFrame) -> PaperTable:
    """Paper rows in the paper's order; after each group of rows sharing one of our methods, its measured rows."""
    columns, setting = table["columns"], table["setting"]
    rows: list[Row] = []
    paper_rows = table["rows"]
    for i, row in enumerate(paper_rows):
        if row.get("paper"):
            rows.append(_paper_row(row, columns))
        last_of_group = i + 1 == len(paper_rows) or _counterpart_key(paper_rows[i + 1]) != _counterpart_key(row)
        if not last_of_group:
            continue
        method, params = row.get("method"), row.get("params") or {}
        if method is None:
            rows.append(_placeholder_row("(no counterpart in this harness)", "no counterpart", columns))
            continue
        ours = f"ours: method={method}" + "".join(f" {k}={v}" for k, v in params.items())
        matching = _matching_runs(runs, method, params, setting)
        if len(matching):
            rows.extend(_measured_rows(ours, matching, columns))
        else:
            missing = "" if method_is_configured(method) else f" (method {method!r} is not registered yet)"
            rows.append(_placeholder_row(ours, "not run", columns, budget=f"not run{missing}",
                                         command=run_command(method, params, setting, table["reproduce_budget"])))
    source = spec["sources"][table["source"]]
    return PaperTable(id=table["id"], title=table["title"], citation=" ".join(source["citation"].split()),
                      url=source["url"], where=" ".join(table["where"].split()),
                      columns=[c["label"] for c in columns], rows=rows)


def build_tables(runs: pd.DataFrame, path: Path = PAPER_TABLES) -> list[PaperTable]:
    spec = load_specs(path)
    return [build_table(spec, t, runs) for t in spec["tables"]]


def table_methods(table_id: str, path: Path = PAPER_TABLES) -> tuple[list[str], dict[str, str], Optional[str]]:
    """(our methods in the table, its setting, its reproduce budget): what `reports.reproduce` runs."""
    spec = load_specs(path)
    for t in spec["tables"]:
        if t["id"] == table_id:
            methods = list(dict.fromkeys(r["method"] for r in t["rows"] if r.get("method")))
            return methods, t["setting"], t.get("reproduce_budget")
    raise KeyError(f"no table {table_id!r} in {path}. Valid: {', '.join(t['id'] for t in spec['tables'])}")
