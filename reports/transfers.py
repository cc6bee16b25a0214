"""Published transfer tables (`kind: transfer` in reports/data/paper_tables.yaml, e.g. GHN Table 3, ImageNet mobile)
beside our transfer records (evaluators/transfer.py).

A paper row is filled by transfers whose source run is the row's method with the row's parameters and ran the row's
selection protocol (checked on the source run's record as the search tables check it, `scaled.<budget>` settings
allowed); its search cost is the source run's, its size and accuracy the transfer's. A transfer that departed from
the paper's protocol (the search's scaled settings, fewer epochs, a capped image set, another resolution, a
plumbing-check source) fills the row as "settings not matched", listing the departures. A row without transfers
says which two commands make one; real ImageNet is the user's to supply.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evaluators.record import RunRecord
from evaluators.transfer import TransferRecord

from . import formatting as fmt
from .paper_tables import (
    Cell,
    PaperTable,
    Row,
    _placeholder_row,
    paper_table,
    protocol_for,
    row_command,
    unmatched_settings,
)
from .records import run_protocol, variant_params


def _values(records: list[TransferRecord], get: Callable[[TransferRecord], Any]) -> list[float]:
    return [v for v in (get(r) for r in records) if v is not None]


def _on_gpu(records: list[TransferRecord]) -> bool:
    return all(r.source.get("device_type") == "cuda" for r in records)


def _search_days(records: list[TransferRecord]) -> list[float]:
    """The source searches' device-days, each search once (several transfers of one search count it once)."""
    by_source = {r.source.get("run_id"): r.source.get("search_gpu_days") for r in records}
    return [v for v in by_source.values() if v is not None]


def _accuracy(key: str) -> Callable[[list[TransferRecord]], str]:
    def cell(records: list[TransferRecord]) -> str:
        values = _values(records, lambda r: getattr(r, key))
        if len(records) == 1 and key == "top1" and values:
            return f"{fmt.num(values[0], 2)} (SE {fmt.num(records[0].top1_se, 2)})"
        return fmt.mean_std(values, lambda x: fmt.num(x, 2))
    return cell


# measured quantity -> cell text from the transfers of one measured row
TRANSFER_METRICS: dict[str, Callable[[list[TransferRecord]], str]] = {
    "search_gpu_days": lambda rs: fmt.mean_std(_search_days(rs), fmt.days) if _on_gpu(rs) else "—",
    "search_days_other_device": lambda rs: "—" if _on_gpu(rs) else (
        f"{fmt.mean_std(_search_days(rs), fmt.days)} on "
        f"{', '.join(sorted({str(r.source.get('device')) for r in rs}))}"),
    "params_m": lambda rs: fmt.mean_std(_values(rs, lambda r: r.network["params"] / 1e6), lambda x: fmt.num(x, 2)),
    "madds_m": lambda rs: fmt.mean_std(_values(rs, lambda r: r.network["madds_darts_units"] / 1e6),
                                       lambda x: fmt.num(x, 1)),
    "top1": _accuracy("top1"),
    "top5": _accuracy("top5"),
}


def matching_transfers(row: dict[str, Any], records: list[TransferRecord], setting: dict[str, str],
                       searches: dict[str, RunRecord]) -> dict[tuple[str, ...], list[TransferRecord]]:
    """The transfers that fill the row, grouped by their departures from the paper's protocol. `searches`: the
    search records by run id (a source run missing there is matched by method and selection name, and says its
    protocol went unchecked)."""
    method = row.get("method")
    wanted = variant_params(method, row.get("params") or {}) if method else None
    groups: dict[tuple[str, ...], list[TransferRecord]] = {}
    for r in records:
        src = r.source
        if (src.get("kind") != "run" or src.get("method") != method or r.space != setting["space"]
                or r.data.get("name") != setting["data"]
                or variant_params(method, src.get("method_params") or {}) != wanted):
            continue
        search = searches.get(src.get("run_id"))
        if search is not None:
            protocol = unmatched_settings(row, run_protocol(search), search.budget)
            if protocol is None:  # the search ran another protocol: another row's, or none of this table's
                continue
        elif (src.get("selection") or {}).get("name") == (row.get("protocol") or {}).get("selection"):
            protocol = [f"source run {src.get('run_id')} not in this results folder: its protocol is unchecked"]
        else:
            continue
        groups.setdefault(tuple(protocol + list(r.departures)), []).append(r)
    return groups


def _measured_rows(label: str, groups: dict[tuple[str, ...], list[TransferRecord]],
                   columns: list[dict[str, Any]]) -> list[Row]:
    out = []
    for departures, records in groups.items():
        cells = [Cell(text=TRANSFER_METRICS[c["metric"]](records), origin="measured") for c in columns]
        seeds = ", ".join(str(s) for s in sorted({r.seed for r in records}))
        widths = "/".join(str(c) for c in sorted({r.network["channels"] for r in records}))
        devices = ", ".join(sorted({r.cost["device"] for r in records}))
        budgets = ", ".join(sorted({str(r.source.get("budget")) for r in records}))
        r0 = records[0]
        how = (f"searched under budget={budgets}, transferred from {', '.join(r.source['run_id'] for r in records)}; "
               f"C={widths}, {r0.network['cells']} cells, {r0.setting['resolution']} px, {len(r0.history)} epochs on "
               f"{r0.data['train_images_used']:,} images; {devices}; seeds {seeds}")
        out.append(Row(label=label, origin="measured", cells=cells, run_ids=[r.transfer_id for r in records],
                       budget=how, settings="settings matched" if not departures
                       else "settings not matched: " + ", ".join(departures)))
    return out


def transfer_command(row: dict[str, Any], table: dict[str, Any]) -> str:
    """The two commands that fill a row: the CIFAR-10 search under the row's protocol, then the transfer."""
    budget = row.get("search_budget") or table.get("search_budget", "paper")
    search = row_command(row, {"space": table["setting"]["space"], "data": "cifar10"}, budget)
    return (f"{search}  &&  python run.py +transfer={table['transfer']} transfer.source=<that run's id> "
            f"data.root=<ImageNet folder> device=cuda")


def build_transfer_table(spec: dict[str, Any], table: dict[str, Any], records: list[TransferRecord],
                         searches: dict[str, RunRecord]) -> PaperTable:
    columns, setting = table["columns"], table["setting"]

    def measured(row: dict[str, Any]) -> list[Row]:
        ours = f"ours: method={row['method']}" + "".join(f" {k}={v}" for k, v in (row.get("params") or {}).items())
        ours += f", {protocol_for(row, None)['selection']}, transferred"
        groups = matching_transfers(row, records, setting, searches)
        if groups:
            return _measured_rows(ours, groups, columns)
        return [_placeholder_row(ours, "not run", columns, budget="not run (needs ImageNet: data.root)",
                                 command=transfer_command(row, table))]

    return paper_table(spec, table, measured)
