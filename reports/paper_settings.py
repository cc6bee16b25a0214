"""What a paper row's "settings matched" compares besides the selection protocol: the budget values a run resolved
against those of its table's paper budget (`paper_budget` in reports/data/paper_tables.yaml, conf/budget/<name>.yaml).

A budget's name is a label (it stays in the run id) and decides nothing here: `budget=smoke budget.name=paper` is
judged by the smoke sizes it ran at. Each compared value that differs is a departure, `field=value (paper: value)`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from evaluators.record import RunRecord
from oneshot_bench.budgets import load_budget

PAPER_BUDGET = "paper"  # the reference budget of a table that names none
# the final network's width and depth: named as a row's protocol names them (selection.final_channels/final_cells)
FINAL_NET = ("final_channels", "final_cells")


def budget_settings(budget: dict[str, Any], space: str) -> dict[str, Any]:
    """The compared values of a resolved budget (a record's `config.budget`, or a BudgetConfig as a dict) for one
    space, in the order departures are listed: the data, the search, the search network and the final training's
    network and epochs (`net_by_space` / `final_net_by_space` override `net` / `final_net`, as in a run)."""
    net = (budget.get("net_by_space") or {}).get(space) or budget.get("net") or {}
    final_net = (budget.get("final_net_by_space") or {}).get(space) or budget.get("final_net") or {}
    return {"resolution": budget.get("resolution"), "max_train_images": budget.get("max_train_images"),
            "max_val_images": budget.get("max_val_images"), "search_epochs": budget.get("search_epochs"),
            "net.channels": net.get("channels"), "net.cells_per_stage": net.get("cells_per_stage"),
            "final_channels": final_net.get("channels"), "final_cells": final_net.get("cells_per_stage"),
            "final.epochs": (budget.get("final") or {}).get("epochs")}


def run_settings(record: RunRecord) -> dict[str, Any]:
    """A run's compared values. The final network is the one its finalists were trained at (the budget's, with the
    protocol's F and N); a looked-up accuracy comes from the benchmark's own training, as the paper row's does, so
    for it the budget's final network and epochs (which it never used) are not compared."""
    values = budget_settings(record.config.get("budget") or {}, record.space)
    if record.found.final_source != "retrained":
        for key in (*FINAL_NET, "final.epochs"):
            del values[key]
        return values
    return values | {"final_channels": record.found.net.get("channels"),
                     "final_cells": record.found.net.get("cells_per_stage")}


def paper_settings(table: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """A row's reference values: the table's paper budget on the table's space. Where the row's protocol sets the
    final network's width or depth, the protocol is the reference for it (and compares it, scaled settings allowed)."""
    budget = load_budget(table.get("paper_budget", PAPER_BUDGET))
    values = budget_settings(dataclasses.asdict(budget), table["setting"]["space"])
    for key in FINAL_NET:
        if key in (row.get("protocol") or {}):
            del values[key]
    return values


def settings_departures(run: dict[str, Any], paper: dict[str, Any]) -> list[str]:
    """`field=value (paper: value)` for each compared value in which the run differs from the paper's."""
    return [f"{key}={_text(key, run[key])} (paper: {_text(key, wanted)})" for key, wanted in paper.items()
            if key in run and run[key] != wanted]


def _text(key: str, value: Any) -> str:
    if value is None:
        return "all" if key.startswith("max_") else "?"  # a null image cap is every image
    return str(value)
