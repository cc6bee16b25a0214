"""Every bad input and fault of the reliability review, one regression test each: a clear error (exit code 2, one
`error:` line naming the key or file, the problem and the fix, no traceback), or handled (the run does the right
thing), and nothing executes from a data or checkpoint file.

The command line is exercised in-process through `run.cli` (the same checks and exit codes as `python run.py`);
the concurrent-run case uses real processes.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_clear_error, cifar_copy, copy_record, interrupted_run

sys.path.insert(0, str(REPO))
import run  # noqa: E402 - the entry point, for in-process command lines


@pytest.fixture
def cli(tmp_path, capsys):
    """Run `python run.py ARGS` in-process on a temp results folder; returns (exit code, stdout, stderr)."""

    def invoke(*args: str, results: Path | None = None) -> tuple[int, str, str]:
        results = results or tmp_path / "results"
        code = run.cli([f"execution.results_dir={results}", f"hydra.run.dir={tmp_path / 'hydra'}",
                        "execution.threads=1", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


# ---- late or missing validation: one clear error before any work ------------------------------------------------
VALIDATION = [  # (case, overrides, what the message names)
    ("seed=-1", ["seed=-1"], ["seed=-1", "seeds must be >= 0"]),
    ("batch size 0", ["budget.batch_size=0"], ["budget.batch_size=0", ">= 1"]),
    ("resolution=0", ["budget.resolution=0"], ["budget.resolution=0", "at least 4 px"]),
    ("ranking_sample=1", ["budget.ranking_sample=1"], ["budget.ranking_sample=1", "at least 4"]),
    ("ranking_sample=20000", ["budget.ranking_sample=20000"], ["budget.ranking_sample=20000", "only 15625 archs"]),
    ("threads=-1", ["execution.threads=-1"], ["execution.threads=-1", ">= 1"]),
    ("topk=abc", ["method.params.topk=abc"], ["method.params.topk", "abc", "Integer"]),
    ("mistyped param", ["method.params.mutation_prob=high"], ["method.params.mutation_prob", "high"]),
    ("search_epochs=-3", ["budget.search_epochs=-3"], ["budget.search_epochs=-3", ">= 0"]),
    ("score_batches=0", ["budget.score_batches=0"], ["budget.score_batches=0", "at least one validation batch"]),
    ("mutation_prob=-1", ["method.params.mutation_prob=-1"], ["method.params.mutation_prob", "[0, 1]"]),
    ("topk=0", ["method.params.topk=0"], ["method.params.topk", ">= 1"]),
    ("sweep objective=bogus", ["+sweep=spos", "sweep.objectives=[bogus]"], ["sweep.objectives", "bogus",
                                                                              "kendall_tau"]),
    ("mode=sweep without a search space", ["mode=sweep"], ["mode='sweep'", "+sweep=<method>"]),
    ("misspelt top-level key", ["sede=1"], ["unknown key 'sede'", "seed", "method=<name>"]),
    ("misspelt budget key", ["+budget.epochz=3"], ["budget.epochz", "search_epochs"]),
    ("misspelt method param", ["method.params.topkk=3"], ["method.params.topkk", "mutation_prob, topk"]),
    ("seed=abc", ["seed=abc"], ["seed", "abc", "Integer"]),
    ("unknown method", ["method=nope"], ["unknown method 'nope'", "spos", "random"]),
    ("unknown space", ["space=nope"], ["unknown space 'nope'", "nb201", "nb101"]),
    ("unknown truth", ["truth=nope"], ["unknown truth 'nope'", "nb201", "trained"]),
    ("truth for another space", ["space=darts_cell", "truth=nb201"], ["truth 'nb201'", "darts_cell", "trained"]),
    ("unsupported pair", ["method=proxylessnas", "space=darts_cell"], ["proxylessnas", "input-selection"]),
    ("bad truth_shard", ["mode=truth", "execution.truth_shard=2/2"], ["execution.truth_shard", "i/n"]),
    ("bad device", ["device=tpu"], ["device='tpu'", "cuda"]),
    # a budget's name begins the run id, a folder name under results/runs/
    ("empty budget name", ['budget.name=""'], ["budget.name=''", "run id", "folder", "budget.name=cpu_32px"]),
    ("blank budget name", ['budget.name=" "'], ["budget.name=' '", "letters, digits"]),
    ("path in budget name", ["budget.name=x/../../tmp/trav"], ["budget.name='x/../../tmp/trav'", "without '..'"]),
    ("separator in budget name", ["budget.name=a\\b"], ["budget.name=", "letters, digits"]),
]


@pytest.mark.parametrize(("case", "overrides", "needles"), VALIDATION, ids=[c[0] for c in VALIDATION])
def test_bad_value_is_one_clear_error_before_any_work(cli, tmp_path, case, overrides, needles):
    start = time.perf_counter()
    assert_clear_error(cli(*overrides), *needles)
    assert time.perf_counter() - start < 30  # refused up front, not after training
    assert not list((tmp_path / "results").glob("runs/*/checkpoint.pt"))  # nothing trained


# ---- code execution: nothing runs from a data or checkpoint file ---------------------------------------------------
class Payload:
    """Unpickling this runs a shell command (what a crafted pickle does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def rewrite_batch(folder: Path, name: str, change) -> None:
    with open(folder / name, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    change(batch)
    (folder / name).write_bytes(pickle.dumps(batch))


def test_a_crafted_cifar_batch_does_not_execute(cli, tmp_path):
    folder = cifar_copy(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    assert_clear_error(cli("data=cifar10", f"data.root={folder.parent}"), "data_batch_1", "posix.system",
                       "Re-download")
    assert not marker.exists()
    pickle.loads((folder / "data_batch_1").read_bytes())  # the payload is live: plain pickle would run it
    assert marker.exists()


def test_a_crafted_checkpoint_does_not_execute(cli, tmp_path, monkeypatch):
    import torch

    from evaluators.store import ResultsStore

    marker = tmp_path / "pwned"
    interrupted_run(cli, monkeypatch, "method=spos")
    (path,) = ResultsStore(tmp_path / "results").runs_dir.glob("*/checkpoint.pt")
    torch.save({"run_id": path.parent.name, "method": Payload(marker)}, path)
    assert_clear_error(cli("method=spos"), str(path), "execution.resume=false")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unrestricted load would run it
    assert marker.exists()


def test_a_record_naming_a_path_as_its_method_reads_no_file(tmp_path, monkeypatch):
    from reports.build import build_report

    copy_record(tmp_path / "results", "record_v1_nb201-spos.json", method="../../x")
    opened = []
    real_open = open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert "1 finished run record(s)" in html and "../../x" in html  # shown as a label, never used as a path
    assert not [p for p in opened if p.endswith("x.yaml") or "/../" in p]


# ---- identity: every input that changes the result changes the run ---------------------------------------------
def test_corrupted_data_is_another_run_and_the_clean_record_stays_the_clean_one(cli, tmp_path):
    folder = cifar_copy(tmp_path)
    args = ("data=cifar10", f"data.root={folder.parent}", "method=spos", "space=mbnet_chain")
    assert cli(*args)[0] == 0
    (clean,) = (tmp_path / "results" / "runs").iterdir()
    rewrite_batch(folder, "data_batch_2", lambda b: b[b"data" if b"data" in b else "data"].__setitem__(
        (slice(0, 100),), 0))  # a valid batch with other pixels
    assert cli(*args)[0] == 0
    assert len(list((tmp_path / "results" / "runs").iterdir())) == 2  # a new run, not the clean record
    rewrite_batch(folder, "data_batch_2", lambda b: None)  # (re-pickled, still the corrupt pixels)
    shutil.rmtree(folder)
    folder = cifar_copy(tmp_path)  # back to the clean files
    code, out, _ = cli(*args)
    assert code == 0 and clean.name in out


def test_labels_out_of_range_and_float_pixels_are_refused(cli, tmp_path):
    folder = cifar_copy(tmp_path)
    key = lambda b, k: k.encode() if k.encode() in b else k  # noqa: E731 - bytes or str keys
    rewrite_batch(folder, "data_batch_3", lambda b: b.__setitem__(key(b, "labels"), [42] * len(b[key(b, "labels")])))
    assert_clear_error(cli("data=cifar10", f"data.root={folder.parent}"), "data_batch_3", "0..9")
    rewrite_batch(folder, "data_batch_3", lambda b: b.__setitem__(key(b, "labels"), [1] * len(b[key(b, "labels")])))
    rewrite_batch(folder, "data_batch_4", lambda b: b.__setitem__(key(b, "data"), b[key(b, "data")] / 255.0))
    assert_clear_error(cli("data=cifar10", f"data.root={folder.parent}"), "data_batch_4", "float64", "uint8")


@pytest.fixture
def truth_dir(tmp_path, monkeypatch):
    """A copy of the shipped tables that a test may change (the package's own stay untouched)."""
    import evaluators.truth.base as base

    folder = tmp_path / "truth-data"
    shutil.copytree(base.DATA_DIR, folder)
    monkeypatch.setattr(base, "DATA_DIR", folder)
    return folder


def test_a_changed_truth_table_is_refused_and_an_opt_out_is_another_recorded_run(cli, truth_dir, tmp_path):
    csv = truth_dir / "nb201_nats_tss_test200.csv"
    lines = csv.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    column = header.split(",").index("CIFAR10TestAccuracy200Epochs")

    def invert(row: str) -> str:
        cells = row.split(",")
        cells[column] = f"{100 - float(cells[column]):.4f}"
        return ",".join(cells)

    assert cli("method=spos")[0] == 0
    csv.write_text("\n".join([header, *map(invert, rows)]) + "\n")
    assert_clear_error(cli("method=spos"), "nb201_nats_tss_test200.csv", "pinned", "truth.verify=false")
    code, out, _ = cli("method=spos", "truth.verify=false")
    assert code == 0
    runs = sorted((tmp_path / "results" / "runs").iterdir())
    assert len(runs) == 2  # the inverted table made another run, not the clean one's record
    records = [json.loads((r / "record.json").read_text()) for r in runs]
    assert sorted(r["hashes"]["truth"]["sha256_verified"] for r in records) == [False, True]


def test_duplicate_rows_in_a_truth_table_are_refused(cli, truth_dir):
    csv = truth_dir / "nb201_nats_tss_test200.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines, lines[1]]) + "\n")
    assert_clear_error(cli("method=spos", "truth.verify=false"), "more than once")


def test_a_checkpoint_of_another_run_is_refused(cli, tmp_path, monkeypatch):
    from evaluators.store import ResultsStore

    interrupted_run(cli, monkeypatch, "method=darts", "method.params.order=1")
    (darts,) = ResultsStore(tmp_path / "results").runs_dir.glob("*darts*/checkpoint.pt")
    interrupted_run(cli, monkeypatch, "method=spos")
    (spos,) = ResultsStore(tmp_path / "results").runs_dir.glob("*spos*/checkpoint.pt")
    shutil.copy(darts, spos)
    assert_clear_error(cli("method=spos"), str(spos), darts.parent.name, "execution.resume=false")
    assert cli("method=spos", "execution.resume=false")[0] == 0


# ---- unreadable files, leftovers, an unwritable results folder -----------------------------------------------------
def test_a_truncated_record_is_named_and_force_recomputes(cli, tmp_path):
    assert cli("method=spos")[0] == 0
    (record,) = (tmp_path / "results" / "runs").glob("*/record.json")
    record.write_text(record.read_text()[:200])
    assert_clear_error(cli("method=spos"), str(record), "execution.force=true")
    assert cli("method=spos", "execution.force=true")[0] == 0
    assert json.loads(record.read_text())["record_version"] == 2
    assert record.with_name("record.json.corrupt").is_file()


def test_a_truncated_checkpoint_is_named_and_resume_false_starts_over(cli, tmp_path, monkeypatch):
    interrupted_run(cli, monkeypatch, "method=spos")
    (checkpoint,) = (tmp_path / "results" / "runs").glob("*/checkpoint.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    assert_clear_error(cli("method=spos"), str(checkpoint), "execution.resume=false")
    assert cli("method=spos", "execution.resume=false")[0] == 0


def test_a_truncated_truth_cache_file_is_set_aside_and_retrained(smoke_config, truth_cache, caplog):
    from evaluators.runner import run_benchmark

    cfg = smoke_config("method=spos", "space=darts_cell", "budget.ranking_sample=4", "budget.candidates=2")
    first = run_benchmark(cfg, progress=False)
    cached = sorted((truth_cache / "truth" / "darts_cell").glob("*.json"), key=os.path.getmtime)
    cached[0].write_text("{\"test_acc\": 9")
    with caplog.at_level("WARNING"):
        second = run_benchmark(smoke_config("method=oneshot", "space=darts_cell", "budget.ranking_sample=4",
                                            "budget.candidates=2"), progress=False)
    assert "unreadable" in caplog.text and cached[0].with_name(cached[0].name + ".corrupt").is_file()
    assert second.ranking.truth == first.ranking.truth  # retrained to the same number (fixed seed)


def test_leftover_tmp_files_of_a_killed_run_are_removed(cli, tmp_path, monkeypatch):
    interrupted_run(cli, monkeypatch, "method=spos")
    (run_dir,) = (tmp_path / "results" / "runs").iterdir()
    leftover = run_dir / ".checkpoint.pt.x1y2z3.tmp"
    leftover.write_bytes(b"half")
    assert cli("method=spos")[0] == 0
    assert not leftover.exists()


def test_an_unwritable_results_folder_fails_before_any_work(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_clear_error(cli("method=spos", results=blocker / "results"), "cannot write results", "execution.results_dir")


def test_a_full_disk_fails_before_any_work(cli, monkeypatch):
    import evaluators.store as store

    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 2**20))
    assert_clear_error(cli("method=spos"), "MiB free", "checkpoints need about")


def test_results_are_written_with_normal_permissions(cli, tmp_path):
    assert cli("method=spos")[0] == 0
    (record,) = (tmp_path / "results" / "runs").glob("*/record.json")
    umask = os.umask(0)
    os.umask(umask)
    assert record.stat().st_mode & 0o777 == 0o666 & ~umask


# ---- divergence --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "hparam"), [
    (("method=darts", "method.params.order=1", "method.params.arch_lr=1000"), "method.params.arch_lr"),
    (("method=enas", "method.params.controller_lr=1000"), "method.params.controller_lr"),
], ids=["darts arch_lr", "enas controller_lr"])
def test_a_blow_up_fails_naming_the_hyperparameter_to_lower(cli, args, hparam):
    assert_clear_error(cli(*args), hparam, "Lower")


# ---- lost work ----------------------------------------------------------------------------------------------------
def test_a_random_run_killed_while_scoring_redoes_no_finished_training(smoke_config, monkeypatch):
    from evaluators.runner import run_benchmark
    from methods.random_search import RandomSearch

    original, trained = RandomSearch._train, []

    def counting(self, arch):
        if len(trained) == 7:
            raise KeyboardInterrupt  # killed during the 8th training
        trained.append(arch)
        return original(self, arch)

    monkeypatch.setattr(RandomSearch, "_train", counting)
    cfg = smoke_config("method=random", "space=mbnet_chain")
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg, progress=False)
    done, trained[:] = list(trained), []
    monkeypatch.setattr(RandomSearch, "_train", lambda self, arch: (trained.append(arch), original(self, arch))[1])
    record = run_benchmark(cfg, progress=False)
    assert not set(done) & set(trained)  # none of the 7 finished trainings ran again
    uninterrupted = run_benchmark(smoke_config("method=random", "space=mbnet_chain", "execution.force=true",
                                               "execution.resume=false"), progress=False)
    assert record.ranking.proxy == uninterrupted.ranking.proxy and record.found.arch == uninterrupted.found.arch


def test_writability_checks_of_identical_runs_starting_together_do_not_collide(tmp_path):
    """Two processes starting the same run probe the same folder at once (a shared probe name let one delete the
    other's probe: 'No such file or directory', exit 2, seen in CI); threads reproduce the interleaving."""
    import threading

    from evaluators.store import ResultsStore

    store, errors, start = ResultsStore(tmp_path), [], threading.Barrier(2)

    def probe():
        start.wait()
        for _ in range(300):
            try:
                store.check_writable("run", 0)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                errors.append(e)
                return

    threads = [threading.Thread(target=probe) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert not [p for p in (tmp_path / "runs" / "run").iterdir() if p.name.startswith(".write-probe")]


def test_two_identical_runs_at_once_compute_once(tmp_path):
    args = [sys.executable, "run.py", "method=spos", "space=mbnet_chain", f"execution.results_dir={tmp_path}",
            "execution.threads=1"]
    procs = [subprocess.Popen([*args, f"hydra.run.dir={tmp_path / f'h{i}'}"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    logs = [out + err for out, err in outputs]
    assert sum("already finished" in log for log in logs) == 1  # the second waited, then reused the record
    assert sum("being computed by another process" in log for log in logs) == 1
    assert len(list((tmp_path / "runs").iterdir())) == 1


# ---- reports survive bad records ---------------------------------------------------------------------------------
def test_one_bad_record_is_skipped_and_the_report_renders(tmp_path, caplog):
    from reports.build import build_report

    good = copy_record(tmp_path / "results", "record_v1_nb201-spos.json", run_id="good")
    dollar = copy_record(tmp_path / "results", "record_v1_mbnet_chain-darts.json", run_id="dollar",
                         params={"order": 1, "arch_lr": "$10^3$"})
    string_metric = copy_record(tmp_path / "results", "record_v1_nb201-spos.json", run_id="string-metric")
    data = json.loads(string_metric.read_text())
    data["summary"]["kendall_tau"] = "high"
    string_metric.write_text(json.dumps(data))
    mismatch = copy_record(tmp_path / "results", "record_v1_nb201-spos.json", run_id="mismatch")
    data = json.loads(mismatch.read_text())
    data["ranking"]["proxy"] = data["ranking"]["proxy"][:-1]
    mismatch.write_text(json.dumps(data))
    with caplog.at_level("WARNING"):
        html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert str(string_metric) in caplog.text and str(mismatch) in caplog.text
    assert "2 finished run record(s)" in html and good.parent.name in html and dollar.parent.name in html
    assert "$10^3$" in html  # shown as text (math text off), not rendered or crashing


def test_a_narrow_cost_range_gets_labelled_ticks():
    import matplotlib.pyplot as plt
    import pandas as pd

    from reports.figures import cost_vs_accuracy

    runs = pd.DataFrame({"search_seconds": [300.0, 420.0, 510.0], "final_test_acc": [40.0, 42.0, 41.0],
                         "variant": ["a", "b", "c"]})
    captured = {}
    real_close = plt.close
    plt.close = lambda fig=None: captured.setdefault("fig", fig)
    try:
        cost_vs_accuracy(runs, "x")
    finally:
        plt.close = real_close
    ax = captured["fig"].axes[0]
    captured["fig"].canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ax.get_xscale() == "linear" and len(labels) >= 2
    real_close(captured["fig"])
