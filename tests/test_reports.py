"""The HTML report and the paper tables: numbers shown equal the records' numbers, paper and measured cells are
labelled, missing methods show how to produce them, and the report regenerates from records alone."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
import subprocess
import sys
import zlib
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml
from conftest import REPO

from evaluators.ranking import ranking_metrics
from evaluators.record import RECORD_VERSION, Cost, Finalist, Found, Hashes, PhaseCost, Ranking, RunRecord, Summary
from evaluators.store import ResultsStore
from evaluators.verdict import ONE_SEED
from methods.ghn import GHNHparams
from oneshot_bench.budgets import load_budget
from reports import formatting as fmt
from reports import reproduce
from reports.build import build_report
from reports.paper_tables import PAPER_TABLES, build_tables, load_specs
from reports.records import load_records, runs_frame, top_half_correlations

# ---- synthetic records built from the record's own types (summary computed by the real Summary.of) ---------------
DEFAULT_TRUTH = {"darts_cell": "trained", "nb201": "nb201", "mbnet_chain": "nas_bench_macro"}  # truth=auto's


def make_record(method: str, seed: int, *, space: str = "mbnet_chain", data: str = "digits", budget: str = "smoke",
                params: dict | None = None, n: int = 12, final_acc: float | None = None,
                protocol: dict | None = None, device_type: str = "cpu") -> RunRecord:
    """`protocol`: the selection (name and settings) the run followed, e.g. {"name": "topk", "k": 2,
    "final_channels": 32}; topk runs get k finalists whose accuracies spread by 1 point around `final_acc`."""
    rng = np.random.default_rng(zlib.crc32(f"{method}/{seed}/{space}/{budget}".encode()))
    truth = list(np.round(rng.uniform(80, 95, n), 3))
    proxy = list(np.asarray(truth) + rng.normal(0, 4, n))
    phases = {"supernet_train": 10.0 + seed, "ranking": 5.0 + seed, "derive": 1.5, "final": 0.25}
    search = sum(v for k, v in phases.items() if k != "final")
    run_id = f"{space}-{method}-{data}-{budget}-s{seed}-{zlib.crc32(repr(params).encode()):08x}"
    device = "CPU (x86_64, 2 threads)" if device_type == "cpu" else "NVIDIA H100 80GB HBM3"
    cost = Cost(device=device, device_type=device_type,
                phases={k: PhaseCost(v, v / 86400) for k, v in phases.items()},
                search_device_seconds=search, search_gpu_days=search / 86400)
    ranking = Ranking(**ranking_metrics(proxy, truth, resamples=50, seed=seed), archs=[f"arch{i}" for i in range(n)],
                      proxy=[float(p) for p in proxy], truth=[float(t) for t in truth])
    protocol = dict(protocol or {"name": "top1"})
    acc = final_acc if final_acc is not None else 90.0 + seed
    count = protocol.get("k", 1) if protocol["name"] == "topk" else 1
    finalists = [Finalist(arch=f"best-{method}-{seed}-{i}", params=100_000 + 1000 * seed + 10 * i, flops=5_000_000,
                          test_acc=acc + (i - (count - 1) / 2), source="tabular", n_images=10_000)
                 for i in range(count)]
    accs = [f.test_acc for f in finalists]
    std = statistics.stdev(accs) if count > 1 else math.nan
    net = {"channels": protocol.pop("final_channels", 8), "cells_per_stage": protocol.pop("final_cells", 1)}
    found = Found(arch=f"best-{method}-{seed}", params=round(statistics.fmean(f.params for f in finalists)),
                  flops=5_000_000 + seed, net=net, resolution=8, final_test_acc=statistics.fmean(accs),
                  final_source="tabular", selection={"k": 10, "final_seeds": 1, **protocol}, finalists=finalists,
                  final_test_acc_std=std, final_test_acc_se=std / math.sqrt(count) if count > 1 else 0.3,
                  params_std=statistics.stdev(f.params for f in finalists) if count > 1 else math.nan,
                  final_n_images=10_000)
    return RunRecord(
        record_version=RECORD_VERSION, run_id=run_id, finished_at="2026-01-01T00:00:00+00:00",
        config={"method": {"name": method, "params": params or {}}, "truth": {"name": DEFAULT_TRUTH.get(space, "t")},
                "budget": dataclasses.asdict(load_budget(budget))},  # the named budget's values, as a run resolves
        method=method, space=space, data=data, budget=budget, seed=seed,
        versions={"torch": "2.14.1", "python": "3.11.7"}, git_commit="abc123", execution={"threads": 2},
        hashes=Hashes(data_sha256="d" * 64, truth={"name": "t", "kind": "tabular", "file": "t.json",
                                                   "sha256": "e" * 64}),
        cost=cost, truth_seconds=0.0, history=[], ranking=ranking, found=found, artifacts=[],
        summary=Summary.of(ranking, found, cost))


def rescored(record: RunRecord) -> RunRecord:
    """The record with its ranking's metrics (and its extra proxies' and references') recomputed from its proxy and
    truth lists, as a run writes them: records are checked against their own lists on load."""
    rk = record.ranking
    for metrics, proxy in [(rk, rk.proxy), *((e, e.proxy) for e in {**rk.extra_proxies, **rk.references}.values())]:
        for key, value in ranking_metrics(proxy, rk.truth, resamples=50, seed=record.seed).items():
            setattr(metrics, key, value)
    record.summary = Summary.of(rk, record.found, record.cost)
    return record


def proxy_with_tau(truth: list[float], tau: float) -> list[float]:
    """Scores whose Kendall tau against `truth` (distinct values) is the nearest a permutation reaches to `tau`: a
    permutation with that many discordant pairs, built from its Lehmer code."""
    n = len(truth)
    left = round(n * (n - 1) / 2 * (1 - tau) / 2)  # discordant pairs: tau = 1 - 4 D / (n (n - 1))
    ranks, pool = [], list(range(n))
    for i in range(n):
        skip = min(left, n - 1 - i)
        ranks.append(pool.pop(skip))
        left -= skip
    order = np.argsort(truth)  # the i-th lowest truth gets the i-th entry's rank
    proxy = [0.0] * n
    for position, arch in enumerate(order):
        proxy[arch] = float(ranks[position])
    return proxy


def write_records(results_dir, records: list[RunRecord]) -> None:
    store = ResultsStore(results_dir)
    for r in records:
        store.save_record(r.run_id, r)


class _Cells(HTMLParser):
    """Rows of every <table>: [(row attributes, [(cell attributes, text)])]."""

    def __init__(self):
        super().__init__()
        self.rows, self._row, self._cell, self._text = [], None, None, []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = (dict(attrs), [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell, self._text = dict(attrs), []

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row[1].append((self._cell, " ".join("".join(self._text).split())))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None


def table_rows(html: str):
    parser = _Cells()
    parser.feed(html)
    return parser.rows


@pytest.fixture
def two_method_results(tmp_path):
    records = [make_record(m, s) for m in ("spos", "random") for s in (0, 1)]
    write_records(tmp_path / "results", records)
    return tmp_path / "results", records


# ---- per-method table -------------------------------------------------------------------------------------------
def test_method_table_shows_exactly_the_records_numbers(two_method_results, tmp_path):
    results, records = two_method_results
    html = build_report(results, tmp_path / "out").read_text()
    rows = {attrs["data-run-id"]: {c.get("data-metric"): text for c, text in cells}
            for attrs, cells in table_rows(html) if "data-run-id" in attrs}
    assert set(rows) == {r.run_id for r in records}
    for r in records:
        row, s, rk = rows[r.run_id], r.summary, r.ranking
        # a supernet method's row names the BN mode its ranking used (legacy records: recalibrate_all)
        assert row["method"] == r.method + (" (BN: recalibrate_all)" if r.method == "spos" else "")
        assert row["seed"] == str(r.seed)
        assert row["final_test_acc"] == f"{s.final_test_acc:.2f} SE {s.final_test_acc_se:.2f} (tabular)"
        assert row["kendall_tau"] == (f"{rk.kendall_tau:.3f} [{rk.kendall_tau_ci_low:.3f}, "
                                      f"{rk.kendall_tau_ci_high:.3f}]")
        assert row["spearman_rho"].startswith(f"{rk.spearman_rho:.3f} [")
        assert row["params"] == f"{s.params:,}" and row["flops"] == f"{s.flops:,}"
        assert row["precision_at_5"] == f"{s.precision_at_5:.2f}"
        assert row["search_gpu_days"] == f"{s.search_gpu_days:.2e}"
        for phase in ("supernet_train", "ranking", "derive", "final"):
            assert row[f"{phase}_seconds"] == fmt.seconds(r.cost.phases[phase].device_seconds)
        assert row["found_arch"] == r.found.arch


def test_report_has_one_section_and_three_figures_per_setting(tmp_path):
    records = [make_record("spos", 0), make_record("spos", 0, space="nb201", budget="cpu")]
    write_records(tmp_path / "results", records)
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert html.count('class="setting"') == 2
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 6
    assert "mbnet_chain / digits / budget=smoke" in html and "nb201 / digits / budget=cpu" in html
    # provenance: device, commit, data hash, versions
    assert "CPU (x86_64, 2 threads)" in html and "abc123" in html and "d" * 12 in html and "2.14.1" in html


def test_empty_results_still_render_with_instructions(tmp_path):
    (tmp_path / "results").mkdir()
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert "No finished records" in html
    origins = {attrs.get("data-origin") for attrs, _ in table_rows(html)} - {None}
    assert origins == {"paper", "not run", "no counterpart"}


def test_report_cli_regenerates_from_records_only(two_method_results, tmp_path):
    results, _ = two_method_results
    r = subprocess.run([sys.executable, "-m", "reports", "--results", str(results), "--out", str(tmp_path / "o")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "report.html").is_file()
    r = subprocess.run([sys.executable, "-m", "reports", "--results", str(tmp_path / "nowhere")], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "nowhere" in r.stderr and "Traceback" not in r.stderr


def test_records_without_the_runner_layout_are_skipped(two_method_results, caplog):
    results, records = two_method_results
    broken = ResultsStore(results).record_path("broken-run")
    broken.parent.mkdir(parents=True)
    broken.write_text('{"record_version": 2, "run_id": "broken-run", "method": "x"}')
    with caplog.at_level("WARNING"):
        loaded = [r.run_id for r in load_records(results)]
    assert sorted(loaded) == sorted(r.run_id for r in records) and "broken-run" not in loaded
    assert str(broken) in caplog.text and "lacks the field" in caplog.text


# ---- derived metrics ---------------------------------------------------------------------------------------------
def test_top_half_correlation_uses_the_truly_better_half():
    truth = [1, 2, 3, 4, 5, 6]
    proxy = [3, 2, 1, 4, 5, 6]  # bottom half reversed, top half perfectly ordered
    out = top_half_correlations(proxy, truth)
    assert out["kendall_top_half"] == pytest.approx(1.0) and out["pearson_top_half"] == pytest.approx(1.0)
    flat = top_half_correlations([1, 1, 1, 0, 0, 0], truth)
    assert flat["kendall_top_half"] == 0.0 and flat["pearson_top_half"] == 0.0  # constant ranks nothing: 0.0


def test_mean_std_follows_the_papers_style():
    assert fmt.mean_std([1.0, 2.0, 3.0]) == "2.000 ± 1.000 (n=3)"
    assert fmt.mean_std([94.6]) == "94.600"
    assert fmt.mean_std([float("nan")]) == fmt.MISSING


# ---- paper tables ------------------------------------------------------------------------------------------------
def _rows_of(tables, table_id):
    return next(t for t in tables if t.id == table_id).rows


TABLE1_RANDOM = {"name": "topk", "k": 2, "final_channels": 32}  # Random (F=32) scaled to budget=table1
# how budget=table1 departs from budget=paper on darts_cell (search net: paper.yaml's net_by_space.darts_cell)
TABLE1_DEPARTURES = ("resolution=16 (paper: 32), max_train_images=1600 (paper: all), max_val_images=800 (paper: all), "
                     "search_epochs=20 (paper: 100), net.channels=8 (paper: 16), net.cells_per_stage=1 (paper: 2)")


def test_paper_and_measured_cells_are_labelled_with_the_budget(tmp_path):
    records = [make_record("random", s, space="darts_cell", data="cifar10", budget="table1", final_acc=60.0 + 2 * s,
                           protocol=TABLE1_RANDOM) for s in (0, 1)]
    write_records(tmp_path / "results", records)
    rows = _rows_of(build_tables(runs_frame(load_records(tmp_path / "results"))), "ghn_table1")
    labels = [r.label for r in rows]
    paper = rows[labels.index("Random (F=32)")]
    assert paper.origin == "paper" and {c.origin for c in paper.cells} == {"paper"}
    assert [c.text for c in paper.cells] == ["—", "—", "4.6 ± 0.6", "94.6 ± 0.3"]
    assert paper.cells[0].note == "printed as '-' in the paper"
    measured = rows[labels.index("Random (F=32)") + 1]
    assert measured.origin == "measured" and {c.origin for c in measured.cells} == {"measured"}
    assert measured.cells[3].text == "61.00 ± 1.41 (n=2)"  # mean and sample std of 60 and 62 over the seeds
    # CPU device-days never stand beside the paper's GPU-days: their own column, naming the device
    assert measured.cells[0].text == "—"
    expected_days = [r.summary.search_gpu_days for r in records]
    assert measured.cells[1].text == f"{fmt.mean_std(expected_days, fmt.days)} on CPU (x86_64, 2 threads)"
    assert "budget=table1" in measured.budget and "CPU (x86_64, 2 threads)" in measured.budget
    assert "seeds 0, 1" in measured.budget and sorted(measured.run_ids) == sorted(r.run_id for r in records)
    # budget=table1's values against budget=paper's for darts_cell, then the protocol's scaled k
    assert measured.settings == ("settings not matched: " + TABLE1_DEPARTURES + ", k=2 (paper: 10)")
    assert "topk k=2 F=32" in measured.budget


def test_a_gpu_measurement_stands_beside_the_papers_gpu_days(tmp_path):
    record = make_record("ghn", 0, space="darts_cell", data="cifar10", budget="paper", device_type="cuda",
                         protocol={"name": "topk", "k": 10, "final_channels": 32})
    write_records(tmp_path / "results", [record])
    rows = _rows_of(build_tables(runs_frame(load_records(tmp_path / "results"))), "ghn_table1")
    (measured,) = [r for r in rows if r.origin == "measured"]
    assert measured.cells[0].text == fmt.days(record.summary.search_gpu_days) and measured.cells[1].text == "—"
    assert measured.settings == "settings matched"
    assert measured.cells[3].text.startswith(f"{record.summary.final_test_acc:.2f} ± ")  # over its 10 finalists


def test_a_paper_row_without_records_shows_not_run_and_its_command(tmp_path):
    (tmp_path / "results").mkdir()
    rows = _rows_of(build_tables(runs_frame(load_records(tmp_path / "results"))), "ghn_table1")
    not_run = [r for r in rows if r.origin == "not run"]
    assert [r.label for r in not_run] == [
        "ours: method=smash, top1", "ours: method=oneshot, topk k=10 F=32", "ours: method=oneshot, topk k=10 F=64",
        "ours: method=random, topk k=10 F=32", "ours: method=ghn, topk k=10 F=32"]  # one per row, its own protocol
    assert not_run[0].command == ("python run.py method=smash space=darts_cell data=cifar10 truth=trained "
                                  "budget=table1 selection=top1")
    assert not_run[2].command == ("python run.py method=oneshot space=darts_cell data=cifar10 truth=trained "
                                  "budget=table1 selection=topk selection.k=2 selection.final_channels=64")
    assert all(c.origin == "none" for r in not_run for c in r.cells)
    (smash_v2,) = [r for r in rows if r.origin == "no counterpart" and "SMASHv2" in r.budget]
    assert "no measurement fills it" in smash_v2.budget


def test_method_params_select_the_paper_row(tmp_path):
    darts_protocol = {"name": "top1", "final_channels": 36, "final_cells": 6, "cutout": 16, "drop_path": 0.2,
                      "auxiliary_weight": 0.4}
    darts = {"space": "darts_cell", "data": "cifar10", "budget": "table1"}
    first = make_record("darts", 0, params={"order": 1}, final_acc=70.0, protocol=darts_protocol, **darts)
    second = make_record("darts", 0, params={"order": 2}, final_acc=80.0, protocol=darts_protocol, **darts)
    no_cutout = make_record("darts", 1, params={"order": 2}, final_acc=50.0, protocol={**darts_protocol, "cutout": 0},
                            **darts)
    write_records(tmp_path / "results", [first, second, no_cutout])
    rows = _rows_of(build_tables(runs_frame(load_records(tmp_path / "results"))), "ghn_table2")
    measured = {r.label: r for r in rows if r.origin == "measured"}
    label = "ours: method=darts order={}, top1 F=36 cutout 16 drop-path 0.2 aux 0.4, BN: recalibrate_all"
    assert measured[label.format(1)].cells[3].text.startswith("70.00")
    assert measured[label.format(2)].cells[3].text.startswith("80.00")
    assert measured[label.format(2)].run_ids == [second.run_id]  # the run without cutout fills no Table 2 row


def test_no_measurement_fills_two_rows_of_a_table():
    """For every row, a run of its protocol (the paper's settings, and each scaled variant) matches that row only."""
    from reports.paper_tables import protocol_for, unmatched_settings

    for table in load_specs()["tables"]:
        rows = [r for r in table["rows"] if r.get("method")]
        for row in rows:
            for budget in [None, *(row.get("scaled") or {})]:
                run = protocol_for(row, budget)
                filled = [other["label"] for other in rows
                          if other["method"] == row["method"] and (other.get("params") or {}) == (row.get("params")
                                                                                                   or {})
                          and (other.get("space_params") or {}) == (row.get("space_params") or {})
                          and unmatched_settings(other, run, budget or "paper") is not None]
                assert filled == [row["label"]], (table["id"], row["label"], budget, filled)


def test_correlation_table_measures_pearson_and_kendall_on_all_and_top_half(tmp_path):
    record = make_record("ghn", 0, space="darts_cell", data="cifar10", budget="table4")
    record.config["truth"] = {"name": "nb301"}  # GHN Table 4 is measured against NAS-Bench-301
    other = make_record("ghn", 1, space="darts_cell", data="cifar10", budget="table4")  # trained truth: not its setting
    write_records(tmp_path / "results", [record, other])
    rows = _rows_of(build_tables(runs_frame(load_records(tmp_path / "results"))), "ghn_correlation")
    measured = next(r for r in rows if r.origin == "measured")
    assert measured.run_ids == [record.run_id]
    top = top_half_correlations(record.ranking.proxy, record.ranking.truth)
    assert [c.text for c in measured.cells] == [
        f"{record.ranking.pearson_r:.2f}", f"{top['pearson_top_half']:.2f}",
        f"{record.ranking.kendall_tau:.2f}", f"{top['kendall_top_half']:.2f}"]
    paper_ghn = next(r for r in rows if r.label == "GHN")
    assert [c.text for c in paper_ghn.cells[:2]] == ["0.68", "0.48"]
    assert paper_ghn.cells[2].text == "—" and "Pearson only" in paper_ghn.cells[2].note


def test_every_paper_number_in_the_data_file_reaches_the_tables(tmp_path):
    spec = load_specs()
    (tmp_path / "results").mkdir()
    tables = {t.id: t for t in build_tables(runs_frame([]))}
    for table in spec["tables"]:
        shown = [[c.text for c in r.cells] for r in tables[table["id"]].rows if r.origin == "paper"]
        expected = [[str(row["paper"][c["key"]]) if row["paper"][c["key"]] is not None else "—"
                     for c in table["columns"]] for row in table["rows"] if row.get("paper")]
        assert shown == expected, table["id"]


def test_paper_data_file_cites_its_sources():
    spec = yaml.safe_load(PAPER_TABLES.read_text())
    assert "Graph HyperNetworks for Neural Architecture Search" in spec["sources"]["ghn"]["citation"]
    assert "ICLR" in spec["sources"]["ghn"]["citation"] or "Learning Representations" in \
        spec["sources"]["ghn"]["citation"]
    assert "NAS-Bench-201" in spec["sources"]["nb201"]["citation"]
    ghn_top = next(r for r in spec["tables"][0]["rows"] if r["label"] == "GHN Top (F=32)")
    assert ghn_top["paper"] == {"cost": "0.42", "cost_other": None, "params": "5.1 ± 0.6",
                                "acc": "95.7 ± 0.1"}  # GHN Table 1
    assert ghn_top["protocol"] == {"selection": "topk", "k": 10, "final_channels": 32, "cutout": 0}


# ---- reproduce-table1 --------------------------------------------------------------------------------------------
def test_reproduce_fails_naming_unregistered_methods(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(reproduce, "registered_methods", lambda: {"random", "spos"})
    rc = reproduce.main(["ghn_table1", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "smash" in err and "oneshot" in err and "ghn" in err and "random," not in err.split("Registered")[0]
    assert not (tmp_path / "r").exists()  # nothing ran


def test_reproduce_runs_every_row_with_its_protocol_and_the_table_budget(tmp_path):
    from reports.paper_tables import table_rows

    rows, setting, budget = table_rows("ghn_table1")
    cmds = [c for _, c in reproduce.run_commands(rows, setting, budget, tmp_path, [])]
    assert [c[2:7] for c in cmds][:2] == [
        ["method=smash", "space=darts_cell", "data=cifar10", "truth=trained", "budget=table1"],
        ["method=oneshot", "space=darts_cell", "data=cifar10", "truth=trained", "budget=table1"]]
    assert [c for c in cmds[2] if c.startswith("selection")] == ["selection=topk", "selection.k=2",
                                                                   "selection.final_channels=64"]
    paper = reproduce.run_commands(rows, setting, budget, tmp_path, ["budget=paper", "device=cuda"])[2][1]
    assert "budget=table1" not in paper and paper[-2:] == ["budget=paper", "device=cuda"]
    assert "selection.k=10" in paper  # the paper's settings at the paper budget


def test_reproduce_nb201_runs_every_method_for_three_seeds_with_the_references(tmp_path):
    from reports.paper_tables import table_spec

    table = table_spec("nb201_weight_sharing")
    rows = reproduce.reproduced_rows(table)
    assert [r["label"] for r in table["rows"] if r.get("reproduce") is False] == ["DARTS-V2 (Liu et al., 2019)"]
    cmds = reproduce.run_commands(rows, table["setting"], table["reproduce_budget"], tmp_path, [],
                                  seeds=table["reproduce_seeds"], references=table["reproduce_references"])
    methods = {c[2].removeprefix("method=") for _, c in cmds}
    from methods.base import METHODS

    assert methods == {m for m in METHODS.names() if METHODS.get(m).supports_name("nb201")}
    assert len(cmds) == 3 * (len(rows) + 1) and {c[-3] for _, c in cmds} >= {"seed=0", "seed=1", "seed=2"}
    zc = [c for _, c in cmds if "method=zc" in c]
    assert len(zc) == 3 and all("method.params.proxy=all" in c and "truth=nb201" in c for c in zc)
    assert all("budget=compare" in c for _, c in cmds)


def test_table1_budget_is_a_valid_profile(smoke_config):
    cfg = smoke_config("budget=table1", "space=darts_cell", "data=cifar10")
    assert cfg.budget.name == "table1" and cfg.budget.resolution == 16


# ---- end to end on real runs -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_from_real_runs_matches_their_records(tmp_path):
    for method in ("spos", "random"):
        r = subprocess.run([sys.executable, "run.py", f"method={method}", "space=mbnet_chain",
                            f"execution.results_dir={tmp_path / 'results'}",
                            f"hydra.run.dir={tmp_path / 'h' / method}"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    rows = {attrs["data-run-id"]: {c.get("data-metric"): text for c, text in cells}
            for attrs, cells in table_rows(html) if "data-run-id" in attrs}
    records = load_records(tmp_path / "results")
    assert len(records) == 2 and set(rows) == {r.run_id for r in records}
    for r in records:
        assert rows[r.run_id]["final_test_acc"].startswith(f"{r.summary.final_test_acc:.2f} SE ")
        assert rows[r.run_id]["kendall_tau"].startswith(f"{r.summary.kendall_tau:.3f}")


# ---- links (the Python half of reports/browser_check.py; the browser half is in test_report_browser.py) ----------
def test_report_links_all_resolve_without_a_browser(two_method_results, tmp_path):
    from reports.browser_check import check_links

    path = build_report(two_method_results[0], tmp_path / "out")
    problems, external, n_images = check_links(path)
    assert problems == [] and n_images == 3
    assert set(external) == {"https://arxiv.org/abs/1810.05749", "https://arxiv.org/abs/2001.00326"}


def test_link_check_reports_each_kind_of_broken_link(tmp_path):
    from reports.browser_check import check_links

    page = tmp_path / "bad.html"
    page.write_text('<a href="#nope">a</a><a href="gone.html">b</a><img src="data:image/png;base64,%%%">'
                    '<img src="data:image/png;base64,R0lGODlh"><a href="https://">c</a><div id="ok"></div>'
                    '<a href="#ok">fine</a>')
    problems, _, n_images = check_links(page)
    assert n_images == 2 and len(problems) == 5, problems
    assert any("'nope'" in p for p in problems) and any("gone.html" in p for p in problems)
    assert any("not valid base64" in p for p in problems) and any("holds no PNG" in p for p in problems)
    assert any("no host" in p for p in problems)


def test_ablation_runs_are_labelled_and_kept_out_of_the_paper_row(tmp_path):
    """A GHN run with stacked=true beside the default GHN run: the method table names the changed hyperparameter,
    and GHN Table 1's measured row is the default run alone (an ablation is not averaged into it)."""
    defaults = json.loads(json.dumps(dataclasses.asdict(GHNHparams()), default=str))  # as records store them
    table1 = {"name": "topk", "k": 2, "final_channels": 32}
    default = make_record("ghn", 0, space="darts_cell", data="cifar10", budget="table1", params=defaults,
                          final_acc=70.0, protocol=table1)
    stacked = make_record("ghn", 0, space="darts_cell", data="cifar10", budget="table1",
                          params={**defaults, "stacked": True}, final_acc=50.0, protocol=table1)
    write_records(tmp_path / "results", [default, stacked])
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    methods = {attrs["data-run-id"]: cells[0][1] for attrs, cells in table_rows(html) if "data-run-id" in attrs}
    assert methods == {default.run_id: "ghn [topk k=2 F=32]", stacked.run_id: "ghn (stacked=True) [topk k=2 F=32]"}
    rows = _rows_of(build_tables(runs_frame(load_records(tmp_path / "results"))), "ghn_table1")
    (measured,) = [r for r in rows if r.origin == "measured" and "ghn" in r.label]
    assert measured.run_ids == [default.run_id] and measured.cells[3].text.startswith("70.00 ± 0.71")


def test_reference_labels_keep_apart_and_stay_near_their_lines():
    from reports.figures import spread_labels

    values = [0.62, 0.60, 0.56, 0.55, 0.55, 0.21, 0.15, -0.01, -0.08]
    heights = spread_labels(values, gap=0.05)
    ordered = sorted(heights)
    assert all(b - a >= 0.05 - 1e-9 for a, b in zip(ordered, ordered[1:], strict=False))
    assert heights[values.index(0.21)] == 0.21 and heights[values.index(-0.08)] == -0.08  # isolated: unmoved
    assert max(abs(h - v) for h, v in zip(heights, values, strict=True)) < 0.1


def test_log_seconds_axis_labels_are_plain_numbers():
    import matplotlib.pyplot as plt

    from reports.figures import log_seconds_axis

    fig, ax = plt.subplots()
    ax.plot([30, 800], [0, 1])
    log_seconds_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(fig)
    assert "100" in labels and "50" in labels and not any("$" in label or "mathdefault" in label for label in labels)


def test_a_method_that_runs_here_as_an_adaptation_says_so_on_its_rows(tmp_path):
    """SMASH's memory-bank space is none of this harness' spaces: its rows carry the method's own adaptation
    statement; a method run on a space it was published on carries none."""
    from conftest import copy_record

    from reports.records import variant_label

    copy_record(tmp_path, "record_v1_nb201-spos.json", run_id="smash-run", method="smash", params={})
    copy_record(tmp_path, "record_v1_nb201-spos.json", run_id="spos-run")
    labels = {r.run_id: variant_label(r) for r in ResultsStore(tmp_path).records()}
    assert labels["smash-run"] == "smash (this harness's adaptation of SMASH to the space)"
    assert "adaptation" not in labels["spos-run"]


def test_a_scaled_measurement_is_labelled_with_the_protocol_it_ran(tmp_path):
    """GHN Table 2's ENAS row at budget=table1 runs F=32 N=1 (scaled): its label says F=32, not the paper's F=36,
    and the row says which settings were not matched."""
    scaled = {"name": "top1", "final_channels": 32, "final_cells": 1, "cutout": 16, "drop_path": 0.4,
              "auxiliary_weight": 0.4}
    record = make_record("enas", 0, space="darts_cell", data="cifar10", budget="table1", protocol=scaled)
    write_records(tmp_path / "results", [record])
    rows = _rows_of(build_tables(runs_frame(load_records(tmp_path / "results"))), "ghn_table2")
    (measured,) = [r for r in rows if r.origin == "measured"]
    # a legacy supernet record: its line names the one BN protocol there was
    assert measured.label == "ours: method=enas, top1 F=32 cutout 16 drop-path 0.4 aux 0.4, BN: recalibrate_all"
    assert measured.settings == ("settings not matched: " + TABLE1_DEPARTURES
                                 + ", final_channels=32 (paper: 36), final_cells=1 (paper: 5)")


def test_ghn_ablation_tables_run_each_variant_and_fill_only_their_rows(tmp_path):
    """Each ablation row is one GHN variant: its command sets that variant (and, for graph size, the space's node
    count), and a run fills only the row of its own variant and node count."""
    from reports.paper_tables import table_spec

    table = table_spec("ghn_ablation_nodes")
    cmds = reproduce.run_commands(reproduce.reproduced_rows(table), table["setting"], table["reproduce_budget"],
                                  tmp_path, [], seeds=[0])
    assert [[a for a in c if a.startswith("space.params")] for _, c in cmds] == [
        ["space.params.nodes=2"], ["space.params.nodes=3"], [], ["space.params.nodes=5"]]
    variants = table_spec("ghn_ablation")
    cmds = reproduce.run_commands(reproduce.reproduced_rows(variants), variants["setting"],
                                  variants["reproduce_budget"], tmp_path, [], seeds=[0])
    assert [[a for a in c if a.startswith("method.params")] for _, c in cmds] == [
        ["method.params.stacked=True", "method.params.stacked_share_params=False"], ["method.params.stacked=True"],
        [], ["method.params.propagation=sync"], ["method.params.steps_T=2"], ["method.params.steps_T=3"]]

    three = make_record("ghn", 0, space="darts_cell", data="cifar10", budget="table4")
    three.config["space"] = {"name": "darts_cell", "params": {"nodes": 3}}
    three.config["truth"] = {"name": "trained"}
    stacked = make_record("ghn", 1, space="darts_cell", data="cifar10", budget="table4", params={"stacked": True})
    default = make_record("ghn", 1, space="darts_cell", data="cifar10", budget="table4")  # same sample and truth
    for r in (stacked, default):
        r.config["truth"] = {"name": "nb301"}
    stacked.ranking.proxy = list(stacked.ranking.truth)  # a perfect ranking: better than the default's, paired
    rescored(stacked)
    write_records(tmp_path / "results", [three, stacked, default])
    loaded = load_records(tmp_path / "results")
    tables = build_tables(runs_frame(loaded), records=loaded)
    nodes = _rows_of(tables, "ghn_ablation_nodes")
    assert [(r.label.split(":")[0], r.origin) for r in nodes if r.origin in ("measured", "not run")] == [
        ("2 nodes per cell", "not run"), ("3 nodes per cell", "measured"), ("4 nodes per cell (DARTS)", "not run"),
        ("5 nodes per cell", "not run")]
    assert next(r for r in nodes if r.origin == "measured").run_ids == [three.run_id]
    assert "space.nodes=3" in next(r for r in nodes if r.origin == "measured").label
    ablation = _rows_of(tables, "ghn_ablation")
    measured = [r for r in ablation if r.origin == "measured"]
    assert [r.run_ids for r in measured] == [[stacked.run_id], [default.run_id]]
    paper = next(r for r in ablation if r.label == "Stacked GHN, shared parameters (the paper's GHN)")
    assert [c.text for c in paper.cells[:2]] == ["0.68", "0.48"]
    assert ablation[ablation.index(paper) + 1] is measured[0]  # beside the paper's row
    # one seed, however clear its arch-sample interval, is no verdict on the variant; the interval stays as detail
    cell = measured[0].cells[4].text
    assert cell.startswith("+") and f"no verdict: {ONE_SEED}" in cell
    assert "Per seed, arch-sample uncertainty of one training run: s1: +" in cell
    assert measured[1].cells[4].text == "— (the baseline)"
    # the nodes ablation compares other spaces unpaired; its baseline (4 nodes) is not in this store
    assert next(r for r in nodes if r.origin == "measured").cells[4].text == "— (no baseline run in this store)"


def test_ablation_variants_are_called_better_only_across_three_seeds(tmp_path):
    """A variant that ranks better than the default GHN on each of 3 seeds (paired on each seed's sample) is better
    across seeds; the nodes ablation, whose variants rank other samples, compares its seeds unpaired."""
    records = []
    for seed in (0, 1, 2):
        default = make_record("ghn", seed, space="nb201", data="cifar10", budget="compare")
        stacked = make_record("ghn", seed, space="nb201", data="cifar10", budget="compare", params={"stacked": True})
        stacked.ranking.proxy = list(stacked.ranking.truth)
        rescored(stacked)
        for r in (default, stacked):
            r.config["truth"] = {"name": "nb201"}
        records += [default, stacked]
        for nodes, quality in ((None, 0.1), (3, 0.9)):
            r = make_record("ghn", seed, space="darts_cell", data="cifar10", budget="table4",
                            params={"nodes_marker": nodes})  # only to give each space its own run id
            r.config["method"]["params"] = {}  # the default GHN, on another space
            r.config["space"] = {"name": "darts_cell", "params": {} if nodes is None else {"nodes": nodes}}
            r.config["truth"] = {"name": "trained"}
            r.ranking.proxy = proxy_with_tau(r.ranking.truth, quality + 0.01 * seed)
            rescored(r)
            records.append(r)
    write_records(tmp_path / "results", records)
    loaded = load_records(tmp_path / "results")
    tables = build_tables(runs_frame(loaded), records=loaded)
    stacked_row = next(r for r in _rows_of(tables, "ghn_ablation_nb201")
                       if r.origin == "measured" and "stacked=True" in r.label)
    cell = stacked_row.cells[4].text
    assert "over 3 seeds: better than the baseline across seeds (adjusted p = " in cell
    three = next(r for r in _rows_of(tables, "ghn_ablation_nodes") if r.origin == "measured" and "nodes=3" in r.label)
    assert "better than the baseline across seeds" in three.cells[4].text
    assert "different samples: no per-seed pairing" in three.cells[4].text
