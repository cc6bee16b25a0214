"""Stored state with the right name but another run's or a wrong content, found by issue 29's own probe: a record
copied from another run's folder or edited, a checkpoint with a tensor of the wrong shape, a trained-truth cache
entry of another arch, a references cache of other values. Each is refused by name (a result or paid-for work) or
set aside and recomputed (a cache), never used.
"""
from __future__ import annotations

import json
import logging
import shutil

import torch
from conftest import assert_clear_error, interrupted_run

CASES = [  # (the probe's case, expected class, test)
    ("#19 another run's record.json copied into this run's folder is returned as 'already finished'",
     "clear error", "test_a_record_copied_from_another_run_is_refused_and_skipped_by_the_report"),
    ("#20 a record whose run_id matches but whose config was edited is reused", "clear error",
     "test_a_record_with_an_edited_configuration_is_refused"),
    ("#21 a checkpoint with the right ids but a tensor of the wrong shape gives a RuntimeError traceback",
     "clear error", "test_a_checkpoint_tensor_of_the_wrong_shape_is_one_clear_error"),
    ("#22 a trained-truth cache entry of arch A under arch B's file name is used for B", "handled",
     "test_a_truth_cache_entry_of_another_arch_is_set_aside_and_retrained"),
    ("#23 a references cache with values of the right length but wrong (reversed) is trusted", "handled",
     "test_a_references_cache_of_other_values_is_set_aside_and_recounted"),
    ("a FIFO named record.json under the report's --results would block the report forever", "handled",
     "test_a_fifo_in_place_of_a_record_is_skipped_without_blocking"),
]

SPOS = ("method=spos", "space=mbnet_chain")


def only(pattern, root):
    (path,) = root.glob(pattern)
    return path


def test_a_record_copied_from_another_run_is_refused_and_skipped_by_the_report(run_cli, tmp_path, caplog, capsys):
    from reports.records import load_records

    results = tmp_path / "results"
    assert run_cli(*SPOS)[0] == 0
    assert run_cli("method=random", "space=mbnet_chain")[0] == 0
    spos, random = only("runs/*-spos-*/record.json", results), only("runs/*-random-*/record.json", results)
    shutil.copy(random, spos)
    assert_clear_error(run_cli(*SPOS), str(spos), "holds run " + random.parent.name, "execution.force=true")
    with caplog.at_level(logging.WARNING):
        records = load_records(results)
    assert [r.method for r in records] == ["random"]  # counted once, not also as the spos run
    assert f"skipping {spos}" in caplog.text + capsys.readouterr().out  # (Hydra's handler, after an in-process run)
    assert run_cli(*SPOS, "execution.force=true")[0] == 0
    assert json.loads(spos.read_text())["method"] == "spos"


def test_a_record_with_an_edited_configuration_is_refused(run_cli, tmp_path):
    assert run_cli(*SPOS)[0] == 0
    record = only("runs/*/record.json", tmp_path / "results")
    data = json.loads(record.read_text())
    data["config"]["budget"]["lr"] = 0.5
    record.write_text(json.dumps(data))
    assert_clear_error(run_cli(*SPOS), str(record), "configuration whose run id is", "execution.force=true")
    assert run_cli(*SPOS, "execution.force=true")[0] == 0  # recomputed, and the edited file kept beside it
    (kept,) = record.parent.glob("record.*.json")
    assert json.loads(kept.read_text())["config"]["budget"]["lr"] == 0.5


def test_a_checkpoint_tensor_of_the_wrong_shape_is_one_clear_error(run_cli, tmp_path, monkeypatch):
    interrupted_run(run_cli, monkeypatch, *SPOS)
    path = only("runs/*/checkpoint.pt", tmp_path / "results")
    state = torch.load(path, weights_only=True)
    weights = next(v for v in state["method"].values() if isinstance(v, dict) and any(
        isinstance(t, torch.Tensor) and t.dim() == 4 for t in v.values()))
    name = next(k for k, t in weights.items() if isinstance(t, torch.Tensor) and t.dim() == 4)
    weights[name] = torch.zeros(3, 3, 1, 1)
    torch.save(state, path)
    assert_clear_error(run_cli(*SPOS), str(path), "execution.resume=false")
    assert run_cli(*SPOS, "execution.resume=false")[0] == 0


def test_a_truth_cache_entry_of_another_arch_is_set_aside_and_retrained(run_cli, tmp_path, caplog, capsys):
    args = ("method=random", "space=darts_cell", "truth=trained", "budget.ranking_sample=4", "budget.candidates=2")
    assert run_cli(*args)[0] == 0
    clean = json.loads(only("runs/*/record.json", tmp_path / "results").read_text())["ranking"]["truth"]
    shutil.rmtree(tmp_path / "results" / "runs")
    cache = sorted((tmp_path / "results" / "cache" / "truth" / "darts_cell").glob("*.json"))
    entries = [json.loads(p.read_text()) for p in cache]
    a, b = next((x, y) for x in cache for y in cache if json.loads(x.read_text())["test_acc"]
                != json.loads(y.read_text())["test_acc"])
    shutil.copy(a, b)  # B's file now holds A's entry (and A's accuracy)
    with caplog.at_level(logging.WARNING):
        code, out, err = run_cli(*args)
    assert code == 0, err
    assert str(b) in caplog.text + out + err and b.with_name(b.name + ".corrupt").is_file()
    assert json.loads(only("runs/*/record.json", tmp_path / "results").read_text())["ranking"]["truth"] == clean
    assert entries  # (the cache held the entries the run trained)


def test_a_references_cache_of_other_values_is_set_aside_and_recounted(run_cli, tmp_path, caplog, capsys):
    assert run_cli(*SPOS)[0] == 0
    record = only("runs/*/record.json", tmp_path / "results")
    clean = json.loads(record.read_text())["ranking"]["references"]["params"]["kendall_tau"]
    cache = only("cache/references/*.json", tmp_path / "results")
    sizes = json.loads(cache.read_text())
    cache.write_text(json.dumps({k: v[::-1] for k, v in sizes.items()}))
    with caplog.at_level(logging.WARNING):
        code, out, err = run_cli(*SPOS, "execution.force=true")
    assert code == 0, err
    assert str(cache) in caplog.text + out + err and cache.with_name(cache.name + ".corrupt").is_file()
    assert json.loads(record.read_text())["ranking"]["references"]["params"]["kendall_tau"] == clean
    assert json.loads(cache.read_text()) == sizes


def test_a_fifo_in_place_of_a_record_is_skipped_without_blocking(confined, tmp_path, caplog):
    import os
    import signal

    from conftest import copy_record

    from reports.build import build_report

    good = copy_record(tmp_path / "results", "record_v1_nb201-spos.json", run_id="good")
    fifo = tmp_path / "results" / "runs" / "fifo" / "record.json"
    fifo.parent.mkdir()
    os.mkfifo(fifo)

    def hung(signum, frame):
        raise AssertionError("the report blocked on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with caplog.at_level(logging.WARNING):
            html = build_report(tmp_path / "results", tmp_path / "results" / "report").read_text()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert "1 finished run record(s)" in html and good.parent.name in html
    assert str(fifo) in caplog.text and "not a regular file" in caplog.text


def test_a_record_of_the_older_layout_is_not_called_foreign():
    """A record_version 1 record's config is rewritten by the migration, so it cannot hash to its id: only its run
    id is compared; a current-layout record must hash to its id."""
    from conftest import REPO

    from evaluators.record import RunRecord
    from evaluators.store import foreign_record, run_id_for

    old = RunRecord.load(REPO / "tests" / "data" / "record_v1_nb201-spos.json")
    assert foreign_record(old, old.run_id) is None
    assert "holds run" in foreign_record(old, "another-run")
    current = RunRecord.from_dict(old.to_dict())  # the same contents, read as the current layout
    assert "configuration whose run id is" in foreign_record(current, old.run_id)
    assert foreign_record(current, run_id_for(current.config)) is not None  # (its run_id field still differs)
