"""Paper rows and the plumbing check go by a run's resolved settings, never by its budget's name: a smoke-sized run
named `paper` is a plumbing check and fills no paper row; a run fills a row as "settings matched" only when its
values are the table's paper budget's, and otherwise lists every departure."""
from __future__ import annotations

import sys

import pytest
import yaml
from conftest import REPO

from evaluators.record import RunRecord
from reports.paper_tables import PAPER_TABLES, build_tables, load_specs
from reports.records import load_records, runs_frame
from tests.test_reports import make_record, write_records

sys.path.insert(0, str(REPO))
import run  # noqa: E402 - the entry point, for in-process command lines

# how budget=compare departs from budget=paper on nb201 (a looked-up accuracy: no final training to compare)
COMPARE_DEPARTURES = ("resolution=16 (paper: 32), max_train_images=2500 (paper: all), max_val_images=2500 "
                      "(paper: all), search_epochs=50 (paper: 100), net.cells_per_stage=1 (paper: 5)")


def spos_rows(records: list[RunRecord], path=PAPER_TABLES):
    """NB201 Table 5's SPOS lines (measured or "not run") built from `records`."""
    table = next(t for t in build_tables(runs_frame(records), path=path, records=records)
                 if t.id == "nb201_weight_sharing")
    return [r for r in table.rows if "ours: method=spos," in r.label]


def nb201_run(seed: int, budget: str, *, name: str | None = None) -> RunRecord:
    """A synthetic SPOS run on nb201 / cifar10 with `budget`'s values, its budget named `name` (default: budget)."""
    record = make_record("spos", seed, space="nb201", data="cifar10", budget=budget)
    if name is not None:
        record.budget = record.config["budget"]["name"] = name
        record.run_id = record.run_id.replace(f"-{budget}-", f"-{name}-")
    return record


def test_a_smoke_sized_run_named_paper_is_a_plumbing_check_and_fills_no_paper_row(cifar_root, tmp_path, capsys):
    """The issue's case: `budget.name=paper` on budget=smoke's sizes, run for real."""
    results = tmp_path / "results"
    code = run.cli(["method=spos", "space=nb201", "data=cifar10", f"data.root={cifar_root}", "budget.name=paper",
                    f"execution.results_dir={results}", f"hydra.run.dir={tmp_path / 'hydra'}",
                    "execution.threads=1"])
    out = " ".join(capsys.readouterr().out.split())  # the console table wraps its caption
    assert code == 0
    (record,) = load_records(results)
    assert record.budget == "paper" and record.run_id.startswith("nb201-spos-cifar10-paper-s0-")  # a label, kept
    for size in ("resolution=8 (at or below budget=smoke's 8)", "max_train_images=256 (at or below budget=smoke's "
                 "256)", "search_epochs=2 (at or below budget=smoke's 2)",
                 "ranking_sample=12 (at or below budget=smoke's 12)"):
        assert size in record.plumbing_check
    assert "PLUMBING CHECK, NOT A MEASUREMENT" in out and "search_epochs=2" in out
    (row,) = spos_rows([record])
    assert row.origin == "not run" and row.run_ids == []


def test_a_run_fills_a_paper_row_by_its_values_not_its_budgets_name(tmp_path):
    compare = nb201_run(0, "compare")
    renamed = nb201_run(1, "compare", name="paper")  # compare's values under the paper's name
    paper = nb201_run(2, "paper")
    smoke = nb201_run(0, "smoke", name="paper")  # smoke sizes: fills nothing
    write_records(tmp_path / "results", [compare, renamed, paper, smoke])
    rows = {tuple(r.run_ids): r for r in spos_rows(load_records(tmp_path / "results"))}
    assert set(rows) == {(compare.run_id,), (renamed.run_id,), (paper.run_id,)}
    assert rows[(compare.run_id,)].settings == "settings not matched: " + COMPARE_DEPARTURES
    assert rows[(renamed.run_id,)].settings == "settings not matched: " + COMPARE_DEPARTURES
    assert "resolution=16 (paper: 32)" in rows[(compare.run_id,)].settings
    assert rows[(paper.run_id,)].settings == "settings matched"
    assert all(r.origin == "measured" for r in rows.values())


def test_one_changed_value_is_a_departure_and_a_retrained_final_net_is_compared(tmp_path):
    epochs = nb201_run(0, "paper")
    epochs.config["budget"]["search_epochs"] = 50
    retrained = make_record("enas", 0, space="darts_cell", data="cifar10", budget="paper",
                            protocol={"name": "top1", "final_channels": 36, "final_cells": 5, "cutout": 16,
                                      "drop_path": 0.4, "auxiliary_weight": 0.4})
    retrained.found.final_source = "retrained"  # trained at the budget's final epochs: compared with the paper's
    retrained.config["budget"]["final"]["epochs"] = 20
    write_records(tmp_path / "results", [epochs, retrained])
    loaded = load_records(tmp_path / "results")
    (row,) = spos_rows(loaded)
    assert row.settings == "settings not matched: search_epochs=50 (paper: 100)"
    table2 = next(t for t in build_tables(runs_frame(loaded), records=loaded) if t.id == "ghn_table2")
    (enas,) = [r for r in table2.rows if r.origin == "measured"]
    assert enas.settings == "settings not matched: final.epochs=20 (paper: 600)"  # F and N are the row's protocol


def test_a_tables_paper_budget_is_its_reference_and_must_exist(tmp_path):
    spec = yaml.safe_load(PAPER_TABLES.read_text())
    nb201 = next(t for t in spec["tables"] if t["id"] == "nb201_weight_sharing")
    nb201["paper_budget"] = "compare"
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump(spec))
    write_records(tmp_path / "results", [nb201_run(0, "compare"), nb201_run(1, "paper")])
    rows = spos_rows(load_records(tmp_path / "results"), path=path)
    assert [r.settings.split(":")[0] for r in rows] == ["settings matched", "settings not matched"]
    assert "resolution=32 (paper: 16)" in rows[1].settings
    nb201["paper_budget"] = "../budget/paper"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=r"paper_budget '../budget/paper'.*Valid: compare, cpu, paper"):
        load_specs(path)

