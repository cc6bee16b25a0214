"""Issue 29, state files with the right ids but the wrong contents, hostile JSON, and the reports' robustness: one
regression test per case, each asserting its class (clear error: exit 2 and one `error:` line naming the file and
the fix; handled: exit 0 and its outcome; pass). Nothing may be written outside the results folder (`confined`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SETPRIV, assert_clear_error, copy_record

CASES = [  # (case as the issue names it, class, test)
    ("checkpoint holding only run_id and config_hash (KeyError: 'method')", "clear error",
     "test_a_checkpoint_with_only_its_ids_is_refused_naming_what_it_lacks"),
    ("checkpoint with method={'bogus': 1} (KeyError: 'rng')", "clear error",
     "test_a_checkpoint_whose_method_state_has_another_layout_is_refused[bogus]"),
    ("checkpoint from an older method-state layout", "clear error",
     "test_a_checkpoint_whose_method_state_has_another_layout_is_refused[older-layout]"),
    ("checkpoint with epoch=10**6 skips epochs and exits 0", "clear error",
     "test_a_checkpoint_epoch_past_the_budget_is_refused"),
    ("progress.json holding only ids (KeyError: 'seconds')", "handled",
     "test_a_progress_file_with_only_its_ids_is_set_aside_and_the_run_matches"),
    ("trained-truth cache test_acc=1e9 ends up in the record", "handled",
     "test_an_out_of_range_truth_cache_entry_is_set_aside_and_retrained[1e9]"),
    ("trained-truth cache test_acc=-500 ends up in the record", "handled",
     "test_an_out_of_range_truth_cache_entry_is_set_aside_and_retrained[-500]"),
    ("trained-truth cache test_acc=NaN ends up in the record", "handled",
     "test_an_out_of_range_truth_cache_entry_is_set_aside_and_retrained[nan]"),
    ("record with kendall_tau=5.0 and final_test_acc=250 rendered", "handled",
     "test_an_out_of_range_record_is_skipped_by_the_report_with_a_named_warning[tau-5-acc-250]"),
    ("record of 1e308 crashes the report (OverflowError)", "handled",
     "test_an_out_of_range_record_is_skipped_by_the_report_with_a_named_warning[cost-1e308]"),
    ("record of Infinity crashes the report (OverflowError)", "handled",
     "test_an_out_of_range_record_is_skipped_by_the_report_with_a_named_warning[acc-inf]"),
    ("record with seed=10**300 crashes the figures (ValueError)", "handled",
     "test_an_out_of_range_record_is_skipped_by_the_report_with_a_named_warning[seed-10e300]"),
    ("formatting and figures on huge and infinite numbers", "pass",
     "test_formatting_and_figures_survive_huge_and_infinite_numbers"),
    ("deeply nested record.json on resume (RecursionError)", "clear error",
     "test_a_deeply_nested_record_on_resume_is_one_clear_error"),
    ("deeply nested record in python -m reports (RecursionError)", "handled",
     "test_a_deeply_nested_record_is_skipped_by_python_m_reports"),
    ("deeply nested record in reports.before_after (RecursionError)", "handled",
     "test_a_deeply_nested_record_is_skipped_by_before_after"),
    ("deeply nested sweeps JSON (RecursionError)", "handled", "test_a_deeply_nested_sweep_summary_is_skipped"),
    ("deeply nested NAS-Bench-Macro truth with truth.verify=false (RecursionError)", "clear error",
     "test_a_deeply_nested_truth_table_is_one_clear_error"),
    ("unreadable record (permission) told to rerun with execution.force=true", "clear error",
     "test_an_unreadable_record_is_told_to_fix_its_permissions_not_to_recompute"),
    ("torch's 'weights_only=False will likely succeed' echoed in the checkpoint error", "clear error",
     "test_the_checkpoint_error_never_suggests_weights_only_false"),
    ("before_after 'no run has a partner' prints the whole budget JSON", "clear error",
     "test_before_after_without_partners_names_the_budget_keys_that_differ"),
    ("the bounded JSON reader on every committed record and on hostile inputs", "pass",
     "test_the_bounded_reader_reads_every_committed_file_and_refuses_hostile_ones"),
    ("every committed record under results/measured loads and none is skipped", "pass",
     "test_every_committed_record_passes_the_range_checks"),
]

MEASURED = REPO / "results" / "measured"


class Killed(BaseException):
    """Ends a run mid-training the way a kill does: nothing of the run catches it."""


@pytest.fixture
def results(tmp_path) -> Path:
    return tmp_path / "results"


def the_checkpoint(results: Path) -> Path:
    (checkpoint,) = (results / "runs").glob("*/checkpoint.pt")
    return checkpoint


def kill_after_first_epoch(run_cli, monkeypatch, *args: str) -> None:
    from methods.spos import SPOS

    original = SPOS.train_epoch

    def dies(self, epoch):
        if epoch > 0:
            raise Killed
        return original(self, epoch)

    monkeypatch.setattr(SPOS, "train_epoch", dies)
    with pytest.raises(Killed):
        run_cli("method=spos", *args)
    monkeypatch.setattr(SPOS, "train_epoch", original)


def nothing_finished(results: Path) -> bool:
    return not list((results / "runs").glob("*/record.json"))


# ---- checkpoints: the right ids, the wrong contents --------------------------------------------------------------
def test_a_checkpoint_with_only_its_ids_is_refused_naming_what_it_lacks(run_cli, monkeypatch, results):
    import torch

    kill_after_first_epoch(run_cli, monkeypatch)
    path = the_checkpoint(results)
    state = torch.load(path, weights_only=True)
    torch.save({"run_id": state["run_id"], "config_hash": state["config_hash"]}, path)
    assert_clear_error(run_cli("method=spos"), str(path), "lacks the field 'method'", "execution.resume=false")
    assert nothing_finished(results)


@pytest.mark.parametrize("method_state", [{"bogus": 1}, "older-layout"], ids=["bogus", "older-layout"])
def test_a_checkpoint_whose_method_state_has_another_layout_is_refused(run_cli, monkeypatch, results, method_state):
    import torch

    kill_after_first_epoch(run_cli, monkeypatch)
    path = the_checkpoint(results)
    state = torch.load(path, weights_only=True)
    if method_state == "older-layout":  # the base state, but the supernet under a name this version does not use
        method_state = dict(state["method"])
        method_state["net"] = method_state.pop("supernet")
        needles = ["spos state", "'supernet'"]
    else:
        needles = ["spos state", "'rng'", "'generator'"]
    torch.save({**state, "method": method_state}, path)
    assert_clear_error(run_cli("method=spos"), str(path), *needles, "execution.resume=false")
    assert nothing_finished(results)


def test_a_checkpoint_epoch_past_the_budget_is_refused(run_cli, monkeypatch, results):
    import torch

    kill_after_first_epoch(run_cli, monkeypatch)
    path = the_checkpoint(results)
    state = torch.load(path, weights_only=True)
    torch.save({**state, "epoch": 10**6}, path)
    assert_clear_error(run_cli("method=spos"), str(path), "checkpoint.epoch is 1000000", "budget.search_epochs=2",
                       "execution.resume=false")
    torch.save({**state, "epoch": 1}, path)  # in range, but with one history row for two epochs
    assert_clear_error(run_cli("method=spos"), str(path), "checkpoint.history has 1 rows", "execution.resume=false")
    assert nothing_finished(results)


def test_a_valid_checkpoint_with_anytime_points_still_resumes(run_cli, monkeypatch, results):
    """The validation's guard: a checkpoint this version wrote, anytime points included, passes it."""
    import torch

    args = ("budget.ranking_every=1", "budget.anytime_share=1000")  # (a share no timing noise can exhaust)
    kill_after_first_epoch(run_cli, monkeypatch, *args)
    assert torch.load(the_checkpoint(results), weights_only=True)["anytime"]  # a point was taken after epoch 0
    code, out, err = run_cli("method=spos", *args)
    assert code == 0 and "resuming run" in out + err
    (record,) = (results / "runs").glob("*/record.json")
    assert [p["epoch"] for p in json.loads(record.read_text())["ranking"]["anytime"]][0] == 1


def test_the_checkpoint_error_never_suggests_weights_only_false(run_cli, monkeypatch, results):
    import torch

    kill_after_first_epoch(run_cli, monkeypatch)
    path = the_checkpoint(results)
    torch.save({"run_id": path.parent.name, "net": torch.nn.Linear(1, 1)}, path)  # a pickled module, not a state
    line = assert_clear_error(run_cli("method=spos"), str(path), "torch.nn.modules.linear.Linear",
                              "execution.resume=false")
    assert "weights_only" not in line and "will likely succeed" not in line
    torch.save({"run_id": path.parent.name, "method": os.system}, path)  # a global that runs commands
    line = assert_clear_error(run_cli("method=spos"), str(path), "posix.system", "execution.resume=false")
    assert "weights_only" not in line


# ---- caches that only save time: set aside and recomputed ----------------------------------------------------------
def test_a_progress_file_with_only_its_ids_is_set_aside_and_the_run_matches(run_cli, results):
    from evaluators.store import config_hash

    assert run_cli("method=random")[0] == 0
    (record_path,) = (results / "runs").glob("*/record.json")
    clean = json.loads(record_path.read_text())
    record_path.unlink()
    progress = record_path.with_name("progress.json")
    progress.write_text(json.dumps({"run_id": clean["run_id"], "config_hash": config_hash(clean["config"])}))
    code, out, err = run_cli("method=random")  # (its log: Hydra's logging replaces pytest's log capture)
    assert code == 0
    assert str(progress) in out + err and "lacks the field 'seconds'" in out + err
    assert progress.with_name("progress.json.corrupt").is_file() and not progress.exists()
    again = json.loads(record_path.read_text())
    for key in ("ranking", "found", "summary"):  # (costs aside: they are timings)
        a, b = dict(again[key]), dict(clean[key])
        for timing in ("final_seconds", "search_device_seconds", "search_gpu_days", "supernet_train_seconds",
                       "ranking_seconds", "derive_seconds", "selection_seconds", "anytime_seconds",
                       "evaluation_device_seconds"):
            a.pop(timing, None), b.pop(timing, None)
        assert a == b, key


TRAINED = ("method=random", "space=darts_cell", "budget.ranking_sample=4", "budget.candidates=2")


@pytest.fixture(scope="module")
def trained_results(tmp_path_factory) -> Path:
    """A finished run whose truth was trained (its cache under cache/truth), made once for the module: each test
    works on a copy."""
    sys.path.insert(0, str(REPO))
    import run

    results = tmp_path_factory.mktemp("trained") / "results"
    assert run.cli([f"execution.results_dir={results}", "execution.threads=1", *TRAINED]) == 0
    return results


@pytest.mark.parametrize("bad", [1e9, -500.0, math.nan], ids=["1e9", "-500", "nan"])
def test_an_out_of_range_truth_cache_entry_is_set_aside_and_retrained(run_cli, results, trained_results, bad):
    shutil.copytree(trained_results, results)
    (record_path,) = (results / "runs").glob("*/record.json")
    clean = json.loads(record_path.read_text())
    ranked = [p for p in (results / "cache" / "truth" / "darts_cell").glob("*.json")
              if json.loads(p.read_text())["arch"] == clean["ranking"]["archs"][0]
              and "test_correct" not in json.loads(p.read_text())]
    (entry,) = ranked
    data = json.loads(entry.read_text())
    entry.write_text(json.dumps({**data, "test_acc": bad}))
    code, out, err = run_cli(*TRAINED, "execution.force=true")
    assert code == 0
    assert str(entry) in out + err and "test_acc" in out + err
    assert entry.with_name(entry.name + ".corrupt").is_file()
    again = json.loads(record_path.read_text())
    assert again["ranking"]["truth"] == clean["ranking"]["truth"]  # retrained to the same number (fixed seed)
    assert json.loads(entry.read_text())["test_acc"] == data["test_acc"]


# ---- records: range-checked on load ------------------------------------------------------------------------------
def _tau_and_accuracy(d):
    d["ranking"]["kendall_tau"] = d["summary"]["kendall_tau"] = 5.0
    d["found"]["final_test_acc"] = d["summary"]["final_test_acc"] = 250.0


def _cost_huge(d):
    d["cost"]["phases"]["supernet_train"] = {"device_seconds": 1e308, "gpu_days": math.inf}


def _accuracy_infinite(d):
    d["found"]["final_test_acc"] = d["summary"]["final_test_acc"] = math.inf


def _seed_huge(d):
    d["seed"] = 10**300


def _tau_not_its_arrays(d):
    d["ranking"]["kendall_tau"] = d["summary"]["kendall_tau"] = 0.5


def _truth_over_100(d):
    d["ranking"]["truth"][0] = 101.0


BAD_RECORDS = [  # (id, change, what the warning names)
    ("tau-5-acc-250", _tau_and_accuracy, "record.ranking.kendall_tau is 5.0"),
    ("cost-1e308", _cost_huge, "record.cost.phases.supernet_train.gpu_days is inf"),
    ("acc-inf", _accuracy_infinite, "record.found.final_test_acc is inf"),
    ("seed-10e300", _seed_huge, "record.seed is an integer of 301 digits"),
    ("tau-not-its-arrays", _tau_not_its_arrays, "but its proxy and truth lists give"),
    ("truth-101", _truth_over_100, "record.ranking.truth[0] is 101.0"),
]


@pytest.mark.parametrize("change,named", [b[1:] for b in BAD_RECORDS], ids=[b[0] for b in BAD_RECORDS])
def test_an_out_of_range_record_is_skipped_by_the_report_with_a_named_warning(confined, results, caplog, change,
                                                                             named):
    from reports.build import build_report

    good = copy_record(results, "record_v1_nb201-spos.json", run_id="good")
    bad = copy_record(results, "record_v1_nb201-spos.json", run_id="bad")
    data = json.loads(bad.read_text())
    change(data)
    bad.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        html = build_report(results, results / "report").read_text()
    assert f"skipping {bad}" in caplog.text and named in caplog.text
    assert "1 finished run record(s)" in html and good.parent.name in html and "bad" not in html.split("<body")[-1] \
        .replace("badge", "")
    assert "250.00" not in html and "5.000" not in html


def test_formatting_and_figures_survive_huge_and_infinite_numbers():
    import matplotlib.pyplot as plt
    import pandas as pd

    from reports import formatting as fmt
    from reports.figures import cost_vs_accuracy, proxy_vs_truth

    for x in (1e308, math.inf, -math.inf, 10**300, -(10**400), 2**70):
        for f in (fmt.num, fmt.seconds, fmt.days, fmt.count, fmt.significant):
            assert len(f(x)) < 12, (f, x)
        assert "inf" in fmt.mean_std([x, 1.0, 2.0], fmt.num) or "e+" in fmt.mean_std([x, 1.0, 2.0], fmt.num)
    assert fmt.with_ci(math.inf, 1e308, -math.inf) == "inf [1e+308, -inf]"
    points = pd.DataFrame({"variant": ["a"] * 3, "seed": [10**300] * 3, "truth": [1.0, 2.0, math.inf],
                           "proxy": [0.1, 0.3, 0.2]})
    runs = pd.DataFrame({"variant": ["a", "b"], "search_seconds": [1e308, 5.0], "final_test_acc": [math.inf, 40.0]})
    for figure in (proxy_vs_truth(points, "x"), cost_vs_accuracy(runs, "x")):
        assert figure.data_uri.startswith("data:image/png;base64,")
    plt.close("all")


def test_every_committed_record_passes_the_range_checks(caplog):
    from reports.records import load_records

    stores = sorted({p.parents[2] for p in MEASURED.glob("**/runs/*/record.json")})
    expected = len(list(MEASURED.glob("**/runs/*/record.json")))
    assert stores and expected > 100
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        loaded = sum(len(load_records(store)) for store in stores)
    seconds = time.perf_counter() - start
    assert not caplog.records, caplog.text  # none skipped
    assert loaded == expected
    assert seconds < 60, f"loading {expected} committed records took {seconds:.1f} s"


# ---- hostile JSON: nested past any file this program writes --------------------------------------------------------
DEEP = "[" * 100_000 + "]" * 100_000


def test_a_deeply_nested_record_on_resume_is_one_clear_error(run_cli, results):
    assert run_cli("method=random")[0] == 0
    (record,) = (results / "runs").glob("*/record.json")
    record.write_text(DEEP)
    assert_clear_error(run_cli("method=random"), str(record), "nested 100000 levels deep", "execution.force=true")
    assert record.read_text() == DEEP  # refused, never replaced without force


def test_a_deeply_nested_record_is_skipped_by_python_m_reports(confined, results, capsys, monkeypatch):
    from reports.__main__ import main

    monkeypatch.setattr(logging.root, "handlers", [])  # its own logging setup, as in a fresh process

    good = copy_record(results, "record_v1_nb201-spos.json", run_id="good")
    deep = results / "runs" / "deep" / "record.json"
    deep.parent.mkdir(parents=True)
    deep.write_text(DEEP)
    assert main(["--results", str(results), "--out", str(results / "report")]) == 0
    err = capsys.readouterr().err
    assert f"skipping {deep}" in err and "nested 100000 levels deep" in err and "Traceback" not in err
    html = (results / "report" / "report.html").read_text()
    assert "1 finished run record(s)" in html and good.parent.name in html


def test_a_deeply_nested_record_is_skipped_by_before_after(confined, results, capsys, monkeypatch):
    from reports.before_after import main

    monkeypatch.setattr(logging.root, "handlers", [])  # its own logging setup, as in a fresh process

    before, after = results / "before", results / "after"
    copy_record(before, "record_v1_nb201-spos.json")
    copy_record(after, "record_v1_nb201-spos.json")
    deep = after / "runs" / "deep" / "record.json"
    deep.parent.mkdir(parents=True)
    deep.write_text(DEEP)
    assert main(["--before", str(before), "--after", str(after)]) == 0
    out = capsys.readouterr()
    assert f"skipping {deep}" in out.err and "nested 100000 levels deep" in out.err and "Traceback" not in out.err
    assert "| nb201 / digits / budget=smoke / truth=nb201 | spos | 0 |" in out.out


def test_a_deeply_nested_sweep_summary_is_skipped(confined, results, caplog):
    from evaluators.sweep import SWEEPS_DIR
    from reports.sweeps import load_summaries

    folder = results / SWEEPS_DIR
    folder.mkdir(parents=True)
    (folder / "deep.json").write_text('{"study_name": "deep", "trials": ' + DEEP + "}")
    with caplog.at_level(logging.WARNING):
        assert load_summaries(results) == []
    assert str(folder / "deep.json") in caplog.text and "nested 100001 levels deep" in caplog.text


def test_a_deeply_nested_truth_table_is_one_clear_error(run_cli, confined, monkeypatch):
    import evaluators.truth.base as base

    folder = confined / "truth-data"  # a copy of the shipped tables (the package's own stay untouched)
    shutil.copytree(base.DATA_DIR, folder)
    monkeypatch.setattr(base, "DATA_DIR", folder)
    table = folder / "nas_bench_macro_cifar10.json"
    table.write_text('{"a": ' + DEEP + "}")
    assert_clear_error(run_cli("method=spos", "space=mbnet_chain", "truth.verify=false"), str(table),
                       "nested 100001 levels deep", "restore the file from git")


# ---- weak errors made clear ----------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv missing: cannot drop root's permission override")
def test_an_unreadable_record_is_told_to_fix_its_permissions_not_to_recompute(run_cli, results, tmp_path):
    assert run_cli("method=random")[0] == 0
    (record,) = (results / "runs").glob("*/record.json")
    record.chmod(0)
    try:
        proc = subprocess.run([*SETPRIV, sys.executable, str(REPO / "run.py"), f"execution.results_dir={results}",
                               "execution.threads=1", "method=random"], cwd=tmp_path / "cwd", capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        record.chmod(0o644)
    line = assert_clear_error((proc.returncode, proc.stdout, proc.stderr), str(record), "Permission denied",
                              "Fix the file's permissions", "chmod u+r")
    assert "execution.force" not in line


def test_before_after_without_partners_names_the_budget_keys_that_differ(confined, results, capsys, monkeypatch):
    from reports.before_after import main

    monkeypatch.setattr(logging.root, "handlers", [])  # its own logging setup, as in a fresh process

    before, after = results / "before", results / "after"
    copy_record(before, "record_v1_nb201-spos.json")
    path = copy_record(after, "record_v1_nb201-spos.json")
    data = json.loads(path.read_text())
    data["config"]["budget"]["search_epochs"] = 3
    data["config"]["budget"]["standalone"]["epochs"] = 7
    path.write_text(json.dumps(data))
    assert main(["--before", str(before), "--after", str(after)]) == 2
    line = assert_clear_error((2, "", capsys.readouterr().err), "no run shares its budget values",
                              "budget.search_epochs: before 2, after 3", "budget.standalone.epochs:",
                              "Run the same commands on both sides")
    assert "bootstrap_resamples" not in line and len(line) < 600


# ---- the bounded JSON reader -------------------------------------------------------------------------------------
def test_the_bounded_reader_reads_every_committed_file_and_refuses_hostile_ones(tmp_path):
    from evaluators.truth.base import unique_json
    from oneshot_bench.atomic import read_json
    from oneshot_bench.errors import DataError
    from oneshot_bench.safe_json import JSONLimitError, loads, nesting_depth

    committed = [*MEASURED.glob("**/*.json"), *(REPO / "evaluators" / "data").glob("*.json")]
    assert len(committed) > 200
    for path in committed:  # the same values as the plain parser (NaN aside: NaN != NaN)
        assert json.dumps(read_json(path), sort_keys=True) == json.dumps(json.loads(path.read_text()), sort_keys=True)
    assert math.isnan(loads('{"x": NaN}')["x"]) and loads("[Infinity, -Infinity]") == [math.inf, -math.inf]
    assert loads('["' + "[" * 10_000 + '"]') == ["[" * 10_000]  # brackets inside a string are text
    assert loads(r'["a\"[[[", {"b": "\\"}]') == ['a"[[[', {"b": "\\"}]  # escaped quotes end no string
    assert nesting_depth('{"a": [[1], {"b": [2]}]}') == 4
    for hostile in (DEEP, "{\"a\":" * 100_000, "[" * 65, '"\\' * 50_000):
        with pytest.raises(ValueError):
            loads(hostile)
    with pytest.raises(JSONLimitError, match="nested 65 levels deep"):
        loads("[" * 65 + "]" * 65)
    assert loads("[" * 64 + "]" * 64)  # the limit itself is allowed
    big = tmp_path / "big.json"
    big.write_text("[" + "1," * 1000 + "1]")
    with pytest.raises(JSONLimitError, match="bytes"):
        read_json(big, max_bytes=1000)
    duplicate = tmp_path / "duplicate.json"
    duplicate.write_text('{"a": 1, "a": 2}')
    with pytest.raises(DataError, match="lists 'a' twice"):
        unique_json(duplicate)
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    with pytest.raises(DataError, match="nested 100000 levels deep"):
        unique_json(deep)
