"""Published tables (reports/data/paper_tables.yaml) regenerated beside our measurements.

Every value cell carries its origin: "paper" (copied from the publication, as printed) or "measured" (from our
records, with the budget, device and protocol it was measured under). A paper row is filled only by records that
ran its protocol (the selection protocol and its settings: `protocol` in the data file); under a CPU budget a row
may accept the settings of `scaled.<budget>`. The row then compares the run's resolved settings (its budget's
values, never its name: reports/paper_settings.py) and protocol with the table's paper budget and the row's
protocol: "settings matched" when nothing differs, else "settings not matched", listing each departure. A
plumbing check (records' `plumbing_check`) fills no row. A paper row without such records gets a "not run" row
holding the command that would produce it; a row this harness has no counterpart for says why.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

from evaluators.record import RunRecord
from oneshot_bench.budgets import budget_names

from . import formatting as fmt
from .ablation import COMPARISON_METRICS, TableComparisons
from .comparison import REFERENCE_METHOD, RankingEntry, reference_entries
from .paper_settings import PAPER_BUDGET, paper_settings, settings_departures
from .records import protocol_text, record_space_params, settings_parts_of, top_half_correlations, variant_params

PAPER_TABLES = Path(__file__).parent / "data" / "paper_tables.yaml"
PROTOCOL_KEYS = ("selection", "k", "candidates", "short_epochs", "final_seeds", "final_channels", "final_cells",
                 "cutout", "drop_path", "auxiliary_weight")


def _on_gpu(runs: pd.DataFrame) -> bool:
    return bool((runs["device_type"] == "cuda").all())


def _other_device(runs: pd.DataFrame, column: str, formatter: Callable[[Any], str]) -> str:
    devices = ", ".join(sorted(set(runs["device"])))
    return f"{fmt.mean_std(runs[column].tolist(), formatter)} on {devices}"


def _accuracy(runs: pd.DataFrame) -> str:
    """One run: mean ± std over its finalists (the papers' style) with its standard error; several runs (seeds):
    mean ± std over them."""
    if len(runs) > 1:
        return fmt.mean_std(runs["final_test_acc"].tolist(), lambda x: fmt.num(x, 2))
    run = runs.iloc[0]
    spread = f" ± {run['final_test_acc_std']:.2f}" if run["n_finalists"] > 1 else ""
    return f"{fmt.num(run['final_test_acc'], 2)}{spread} (SE {fmt.num(run['final_test_acc_se'], 2)})"


def _params(runs: pd.DataFrame) -> str:
    if len(runs) > 1:
        return fmt.mean_std(runs["params_m"].tolist(), lambda x: fmt.num(x, 3))
    run = runs.iloc[0]
    spread = f" ± {run['params_m_std']:.3f}" if run["n_finalists"] > 1 and not math.isnan(run["params_m_std"]) else ""
    return f"{fmt.num(run['params_m'], 3)}{spread}"


def _mean(column: str, digits: int) -> Callable[[pd.DataFrame], str]:
    return lambda runs: fmt.mean_std(runs[column].tolist(), lambda x: fmt.num(x, digits))


# measured quantity -> cell text from the runs of one measured row (columns of records.runs_frame)
MEASURED_METRICS: dict[str, Callable[[pd.DataFrame], str]] = {
    "search_gpu_days": lambda runs: fmt.mean_std(runs["search_gpu_days"].tolist(), fmt.days) if _on_gpu(runs)
    else "—",
    "search_days_other_device": lambda runs: "—" if _on_gpu(runs) else _other_device(runs, "search_gpu_days",
                                                                                        fmt.days),
    "search_gpu_seconds": lambda runs: fmt.mean_std(runs["search_seconds"].tolist(), fmt.seconds) if _on_gpu(runs)
    else "—",
    "search_seconds_other_device": lambda runs: "—" if _on_gpu(runs) else _other_device(runs, "search_seconds",
                                                                                          fmt.seconds),
    "params_m": _params,
    "final_test_acc": _accuracy,
    "pearson_all": _mean("pearson_all", 2),
    "pearson_top_half": _mean("pearson_top_half", 2),
    "kendall_all": _mean("kendall_all", 2),
    "kendall_top_half": _mean("kendall_top_half", 2),
}

# measured from the runs' records rather than the runs frame: a variant's Kendall tau against the table's baseline
# variant, decided across seeds (reports.ablation): paired on each seed's shared sample (`paired_baseline`), or
# unpaired where the variants rank different samples (`unpaired_baseline`)
PAIRED_METRICS = tuple(COMPARISON_METRICS)


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
    budget: str = ""  # how the measured numbers were obtained (budget, device, seeds, protocol)
    command: str = ""  # for "not run": what would produce the measurement
    run_ids: list[str] = field(default_factory=list)
    settings: str = ""  # for "measured": "settings matched" or "settings not matched: ..."


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
    from .transfers import TRANSFER_METRICS

    for table in spec["tables"]:
        if table["source"] not in spec["sources"]:
            raise ValueError(f"{path}: table {table['id']} cites unknown source {table['source']!r}")
        if table.get("paper_budget", PAPER_BUDGET) not in budget_names():
            raise ValueError(f"{path}: table {table['id']} has paper_budget {table['paper_budget']!r}, which is no "
                             f"budget of conf/budget/. Valid: {', '.join(budget_names())}")
        metrics = TRANSFER_METRICS if is_transfer(table) else {**MEASURED_METRICS, **dict.fromkeys(PAIRED_METRICS)}
        for col in table["columns"]:
            if col["metric"] not in metrics:
                raise ValueError(f"{path}: unknown metric {col['metric']!r}. Valid: {sorted(metrics)}")
            baseline_key = COMPARISON_METRICS.get(col["metric"])
            if baseline_key and baseline_key not in table:
                raise ValueError(f"{path}: table {table['id']} has a {col['metric']} column but no `{baseline_key}`")
        for row in table["rows"]:
            if not isinstance(row.get("reproduce", True), bool):
                raise ValueError(f"{path}: row {row['label']!r}: `reproduce` must be true or false")
            unknown = set(row.get("protocol") or {}) - set(PROTOCOL_KEYS)
            for scaled in (row.get("scaled") or {}).values():
                unknown |= set(scaled) - set(PROTOCOL_KEYS)
            if unknown or (row.get("method") and "selection" not in (row.get("protocol") or {})):
                raise ValueError(f"{path}: row {row['label']!r} needs a protocol with `selection` and only the keys "
                                 f"{PROTOCOL_KEYS} (got {sorted(unknown)})")
    return spec


def is_transfer(table: dict[str, Any]) -> bool:
    """A table of transferred cells (e.g. ImageNet mobile), filled from transfer records, not search runs."""
    return table.get("kind") == "transfer"


def method_is_configured(method: str) -> bool:
    """Whether `method=<name>` can be run: the installed registry has it (names never resolve as paths)."""
    from methods import METHODS

    return method in METHODS.names()


def protocol_for(row: dict[str, Any], budget: Optional[str]) -> dict[str, Any]:
    """The row's protocol as run under `budget`: the paper's settings with the row's scaled ones for it."""
    return {**(row.get("protocol") or {}), **((row.get("scaled") or {}).get(budget) or {})}


def unmatched_settings(row: dict[str, Any], run_protocol: dict[str, Any], budget: str) -> Optional[list[str]]:
    """None when a run did not follow the row's protocol; else the protocol settings in which it departs from the
    paper's (allowed only where the row's `scaled.<budget>` says so; empty: every protocol setting matched). The
    budget's values are compared apart (paper_settings.settings_departures)."""
    paper = row.get("protocol") or {}
    scaled = (row.get("scaled") or {}).get(budget) or {}
    departures = []
    for key, wanted in paper.items():
        value = run_protocol.get(key)
        if value == wanted:
            continue
        if key in scaled and value == scaled[key]:
            departures.append(f"{key}={value} (paper: {wanted})")
            continue
        return None
    if run_protocol.get("precision", "fp32") != "fp32":  # the papers searched in fp32
        departures.append(f"precision={run_protocol['precision']} (paper: fp32)")
    return departures


def space_params_of(row: dict[str, Any], setting: dict[str, Any]) -> dict[str, Any]:
    """The space parameters a row's runs have: the table's `setting.space_params`, updated by the row's own (a
    graph-size ablation row sets `space_params: {nodes: 3}`); {} for the space's defaults."""
    return {**(setting.get("space_params") or {}), **(row.get("space_params") or {})}


def row_command(row: dict[str, Any], setting: dict[str, str], budget: str) -> str:
    """The command that runs the row's protocol under `budget` (its scaled settings there, if any)."""
    protocol = protocol_for(row, budget)
    overrides = [f"space.params.{k}={v}" for k, v in space_params_of(row, setting).items()]
    overrides += [f"method.params.{k}={v}" for k, v in (row.get("params") or {}).items()]
    overrides.append(f"selection={protocol.get('selection', 'top1')}")
    overrides += [f"selection.{k}={v}" for k, v in protocol.items() if k != "selection" and v]
    truth = f" truth={setting['truth']}" if setting.get("truth") else ""
    return (f"python run.py method={row['method']} space={setting['space']} data={setting['data']}{truth} "
            f"budget={budget} {' '.join(overrides)}").strip()


def _matching_runs(runs: pd.DataFrame, row: dict[str, Any], table: dict[str, Any]) -> dict[tuple, pd.DataFrame]:
    """The runs that fill the row, grouped by the departures from the paper's settings (one measured row each): its
    budget's values against the table's paper budget, then its protocol against the row's."""
    if runs.empty:
        return {}
    setting = table["setting"]
    method, params = row["method"], row.get("params") or {}
    hit = (runs["method"] == method) & (runs["space"] == setting["space"]) & (runs["data"] == setting["data"])
    space_params = space_params_of(row, setting)  # e.g. darts_cell's nodes: another space, another sample
    hit &= runs["space_params"].map(lambda p: p == space_params)
    if setting.get("truth"):  # e.g. GHN Table 4 against NAS-Bench-301, Table 1 against retraining
        hit &= runs["truth"] == setting["truth"]
    # exactly the row's configuration: the row's params on top of the method's defaults, so that ablation runs
    # (other hyperparameters changed) are never averaged into a paper table's row
    wanted = variant_params(method, params)
    hit &= runs["variant_params"].map(lambda p: p == wanted)
    paper = paper_settings(table, row)
    groups: dict[tuple, list[int]] = {}
    for index, run in runs[hit].iterrows():
        if run["plumbing_check"]:  # it shows that the code runs: no paper's number stands beside it
            continue
        protocol = unmatched_settings(row, run["protocol"], run["budget"])
        if protocol is not None:
            departures = settings_departures(run["run_settings"], paper) + protocol
            groups.setdefault(tuple(departures), []).append(index)
    return {departures: runs.loc[indices] for departures, indices in groups.items()}


def _paper_row(row: dict[str, Any], columns: list[dict[str, Any]]) -> Row:
    values, notes = row.get("paper") or {}, row.get("notes") or {}
    cells = []
    for col in columns:
        value = values.get(col["key"])
        cells.append(Cell(text="—" if value is None else str(value), origin="paper",
                          note=notes.get(col["key"], "not reported" if value is None else "")))
    return Row(label=row["label"], origin="paper", cells=cells, budget=" ".join(str(notes.get("row", "")).split()))


def leading_rows(row: dict[str, Any], columns: list[dict[str, Any]]) -> tuple[list[Row], bool]:
    """A table row's line of published numbers (when it has some) and, when this harness has no counterpart, the
    line saying why; the flag says whether measured lines follow (the row names a method)."""
    rows = [_paper_row(row, columns)] if row.get("paper") else []
    if row.get("method") is None:
        why = " ".join(str((row.get("notes") or {}).get("row", "")).split())
        rows.append(_placeholder_row("(no counterpart in this harness)", "no counterpart", columns, budget=why))
        return rows, False
    return rows, True


def _row_groups(groups: dict[tuple, pd.DataFrame]) -> Iterable[tuple[tuple, pd.DataFrame]]:
    """The runs of each measured line: one per (settings departures, budget, device, BN scoring mode): runs whose
    supernets scored under different BN modes ran different protocols, and are never averaged into one line."""
    for departures, runs in groups.items():
        mode = runs["bn_mode"] if "bn_mode" in runs else ""
        for _, group in runs.assign(bn_mode=mode).groupby(["budget", "device", "bn_mode"], sort=True):
            yield departures, group


def _measured_rows(label: str, groups: dict[tuple, pd.DataFrame], columns: list[dict[str, Any]],
                   paired: Optional[Callable[[pd.DataFrame], Cell]] = None) -> list[Row]:
    """One row per (settings departures, budget, device); cells from its runs (several seeds: mean ± std);
    `paired` makes the cells of a comparison column."""
    out = []
    for departures, group in _row_groups(groups):
        device = group["device"].iloc[0]
        cells = [paired(group) if col["metric"] in PAIRED_METRICS and paired is not None
                 else Cell(text=MEASURED_METRICS[col["metric"]](group), origin="measured") for col in columns]
        seeds = sorted(group["seed"].tolist())
        settings = ("settings matched" if not departures
                    else "settings not matched: " + ", ".join(departures))
        # the label names the protocol the runs ran (a scaled one where the budget scales the row) and, for a
        # supernet method, how its supernet scored subnets (a protocol of this harness: methods/bn_scoring.py)
        mode = group["bn_mode"].iloc[0] if "bn_mode" in group else ""
        protocol = protocol_text(group["protocol"].iloc[0]) + (f", BN: {mode}" if mode else "")
        out.append(Row(label=f"{label}, {protocol}", origin="measured",
                       cells=cells, run_ids=group["run_id"].tolist(),
                       budget=f"{group['budget_desc'].iloc[0]}; {device}; seeds {', '.join(map(str, seeds))}; "
                              f"protocol {protocol_text(group['protocol'].iloc[0])}",
                       settings=settings))
    return out


def _placeholder_row(label: str, origin: str, columns: list[dict[str, Any]], budget: str = "",
                     command: str = "") -> Row:
    return Row(label=label, origin=origin, cells=[Cell("—", "none") for _ in columns], budget=budget, command=command)


def _reference_metric(metric: str, entries: list[RankingEntry]) -> Cell:
    """A reference's cell: its ranking metrics over seeds (mean ± std); what a reference does not have (search
    cost, a found arch's accuracy or size) is "—"."""
    values: list[float] = []
    for e in entries:
        if metric in ("kendall_all", "pearson_all"):
            values.append(e.metrics.kendall_tau if metric == "kendall_all" else e.metrics.pearson_r)
        elif metric in ("kendall_top_half", "pearson_top_half"):
            top = top_half_correlations(e.proxy, e.truth)
            values.append(top[metric])
        else:
            return Cell("—", "none", "a reference ranks the sample without training; it searches nothing"
                        if metric not in PAIRED_METRICS else "references are not ablation variants")
    return Cell(fmt.mean_std(values, lambda x: fmt.num(x, 2)), "measured")


def _distinct_parts(settings: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """Each setting (space, data, budget, truth) cut to the parts that differ between the settings, in words; ""
    for all when there is one setting."""
    varying = [i for i in range(len(settings[0]))
               if len({s[i] for s in settings}) > 1] if settings else []
    return {s: " / ".join(s[i] for i in varying) for s in settings}


def _reference_rows(table: dict[str, Any], records: list[RunRecord], columns: list[dict[str, Any]]) -> list[Row]:
    """'reference: no training' rows: each free ranking of the table's setting (parameter count, FLOPs, the
    zero-cost proxies of zc runs), per budget, over the seeds that have it."""
    setting = table["setting"]
    # only the space settings the table's rows run (ghn_table1 shares darts_cell with the nodes ablation, whose
    # darts_cell[nodes=2] references are not its own)
    rows_params = ([space_params_of(row, setting) for row in table["rows"] if row.get("method")]
                   or [space_params_of({}, setting)])
    chosen = [r for r in records if r.space == setting["space"] and r.data == setting["data"]
              and (not setting.get("truth") or r.config.get("truth", {}).get("name") == setting["truth"])
              and record_space_params(r) in rows_params]
    settings = settings_parts_of(chosen)
    by_setting: dict[tuple[str, ...], list[RunRecord]] = {}
    for r in chosen:
        by_setting.setdefault(settings[r.run_id], []).append(r)
    distinct = _distinct_parts(list(by_setting))
    rows = []
    for parts, group in sorted(by_setting.items()):
        entries: dict[str, list[RankingEntry]] = {}
        for e in reference_entries(group):
            entries.setdefault(e.label, []).append(e)
        for label, es in sorted(entries.items()):
            seeds = ", ".join(str(e.seed) for e in es)
            # a table over several settings (darts_cell[nodes=2], [nodes=3], ...) has one reference per setting:
            # the label names what sets it apart, or the rows would read as the same reference twice
            label = f"{label} ({distinct[parts]})" if distinct[parts] else label
            rows.append(Row(label=label, origin="reference", cells=[_reference_metric(c["metric"], es)
                                                                   for c in columns],
                            budget=f"{' / '.join(parts)}; seeds {seeds}; the shared ranking sample, no training"))
    return rows


def build_table(spec: dict[str, Any], table: dict[str, Any], runs: pd.DataFrame,
                records: Optional[list[RunRecord]] = None) -> PaperTable:
    """Each paper row in the paper's order, followed by the measured rows of its own protocol (or why none), then
    the references of the table's setting ("reference: no training")."""
    columns, setting = table["columns"], table["setting"]
    by_id = {r.run_id: r for r in records or []}
    # each row's runs, once: the comparison column needs every row's before any row is built
    matches = {id(row): _matching_runs(runs, row, table) for row in table["rows"] if row.get("method")}
    paired = None
    if any(col["metric"] in PAIRED_METRICS for col in columns):
        comparisons = TableComparisons(table, runs, by_id, [group for groups in matches.values()
                                                            for _, group in _row_groups(groups)])
        paired = lambda group: Cell(comparisons.cell_text(group), "measured",  # noqa: E731
                                    note="across training seeds (reports.ablation)")

    def measured(row: dict[str, Any]) -> list[Row]:
        method = row["method"]
        ours = (f"ours: method={method}" + "".join(f" {k}={v}" for k, v in (row.get("params") or {}).items())
                + "".join(f" space.{k}={v}" for k, v in space_params_of(row, setting).items()))
        if not row.get("paper"):  # a row of ours only (an ablation variant): its own label says what it varies
            ours = f"{row['label']}: {ours}"
        groups = matches[id(row)]
        if groups:
            return _measured_rows(ours, groups, columns, paired)
        missing = "" if method_is_configured(method) else f" (method {method!r} is not registered yet)"
        protocol = protocol_text(protocol_for(row, None))  # the paper's; the command shows the scaled one
        return [_placeholder_row(f"{ours}, {protocol}", "not run", columns, budget=f"not run{missing}",
                                 command=row_command(row, setting, table["reproduce_budget"]))]

    return paper_table(spec, table, measured, _reference_rows(table, records or [], columns))


def paper_table(spec: dict[str, Any], table: dict[str, Any], measured: Callable[[dict[str, Any]], list[Row]],
                trailing: Sequence[Row] = ()) -> PaperTable:
    """A table's rows in the paper's order: each row's published line (or why it has no counterpart here), then
    `measured(row)` for rows with a method; `trailing` (e.g. the references) last."""
    columns, rows = table["columns"], []
    for row in table["rows"]:
        leading, measurable = leading_rows(row, columns)
        rows += leading + (measured(row) if measurable else [])
    source = spec["sources"][table["source"]]
    return PaperTable(id=table["id"], title=table["title"], citation=" ".join(source["citation"].split()),
                      url=source["url"], where=" ".join(table["where"].split()),
                      columns=[c["label"] for c in columns], rows=rows + list(trailing))


def build_tables(runs: pd.DataFrame, path: Path = PAPER_TABLES, records: Optional[list[RunRecord]] = None,
                 transfers: Optional[list[Any]] = None) -> list[PaperTable]:
    """Every table of the data file: search tables from `runs`/`records`, transfer tables from `transfers`
    (evaluators.transfer.TransferRecord)."""
    from .transfers import build_transfer_table

    spec = load_specs(path)
    runs = runs[runs["method"] != REFERENCE_METHOD] if len(runs) else runs  # zc fills reference rows only
    searches = {r.run_id: r for r in records or []}
    return [build_transfer_table(spec, t, transfers or [], searches) if is_transfer(t)
            else build_table(spec, t, runs, records) for t in spec["tables"]]


def table_spec(table_id: str, path: Path = PAPER_TABLES) -> dict[str, Any]:
    """The table's entry in the data file (KeyError listing the valid ids)."""
    spec = load_specs(path)
    for t in spec["tables"]:
        if t["id"] == table_id:
            return t
    raise KeyError(f"no table {table_id!r} in {path}. Valid: {', '.join(t['id'] for t in spec['tables'])}")


def table_rows(table_id: str, path: Path = PAPER_TABLES) -> tuple[list[dict[str, Any]], dict[str, str], str]:
    """(the table's rows that have a counterpart here, its setting, its reproduce budget): what
    `reports.reproduce` runs, one command per row."""
    t = table_spec(table_id, path)
    return [r for r in t["rows"] if r.get("method")], t["setting"], t["reproduce_budget"]
