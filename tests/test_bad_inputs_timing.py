"""Fault timings and concurrency found by issue 29's own probe (families the reliability review did not name):
a second Ctrl-C during the first one's cleanup, two runs started in the same second, an identical run waiting on a
stopped process, and a progress file rewritten after every arch of a sample of thousands.

Processes are real where the timing is the case (signals, simultaneous starts); the rest run in-process.
"""
from __future__ import annotations

import fcntl
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from conftest import REPO

sys.path.insert(0, str(REPO))
import run  # noqa: E402 - the entry point

CASES = [  # (the probe's case, expected class, test)
    ("#7 a double SIGINT during training (the second during the first one's cleanup)", "handled",
     "test_a_double_ctrl_c_is_one_line_and_the_run_resumes"),
    ("#11 two runs started in the same second share Hydra's run folder (its config snapshot overwritten)", "handled",
     "test_runs_started_together_keep_their_own_hydra_snapshot"),
    ("#60 an identical run waits on a stopped lock holder without saying who holds it", "handled",
     "test_a_waiting_run_names_the_process_that_holds_the_lock"),
    ("#14 two report builds to the same --out: one's rename of a shared temporary name fails (FileNotFoundError)",
     "handled", "test_two_report_builds_to_one_folder_both_finish"),
    ("(review) Ctrl-C in python -m reports.before_after / evaluators.sweep / reports.reproduce printed a traceback",
     "handled", "test_every_entry_point_turns_ctrl_c_into_one_line_and_exit_130"),
    ("#51 scoring the whole space rewrites the progress file after every arch (I/O grows with the square)",
     "handled", "test_progress_writes_are_spaced_by_their_own_cost"),
]


def python_run(*args: str, results: Path) -> list[str]:
    return [sys.executable, str(REPO / "run.py"), *args, f"execution.results_dir={results}", "execution.threads=1"]


def test_a_double_ctrl_c_is_one_line_and_the_run_resumes(confined, tmp_path):
    results = tmp_path / "results"
    args = ("method=spos", "space=mbnet_chain", "budget.search_epochs=40")
    proc = subprocess.Popen(python_run(*args, results=results), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not list(results.glob("runs/*/checkpoint.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)  # the second arrives while the first unwinds (atomic-write cleanup, lock release)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.count(run.INTERRUPTED) == 1 and "Traceback" not in err, err
    assert not list(results.glob("runs/*/.*.tmp"))
    resumed = subprocess.run(python_run(*args, results=results), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run" in resumed.stderr + resumed.stdout
    (record,) = results.glob("runs/*/record.json")
    assert len(json.loads(record.read_text())["history"]) == 40


def test_runs_started_together_keep_their_own_hydra_snapshot(confined, tmp_path):
    """Hydra's run folder is named by the start time; to the second, two runs started together shared it and the
    second's .hydra/overrides.yaml replaced the first's (the probe hit it on its third try)."""
    results = tmp_path / "results"
    procs = [subprocess.Popen(python_run("mode=truth", f"seed={seed}", results=results), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    snapshots = sorted(results.glob("hydra/*/*/.hydra/overrides.yaml"))
    assert len(snapshots) == 2
    assert sorted("seed=1" in p.read_text() for p in snapshots) == [False, True]


def test_a_waiting_run_names_the_process_that_holds_the_lock(tmp_path, caplog):
    from evaluators.store import ResultsStore

    store = ResultsStore(tmp_path)
    held, release = threading.Event(), threading.Event()

    def holder():
        with store.lock("run"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    assert "pid" in (tmp_path / "runs" / "run" / ".lock").read_text()
    timer = threading.Timer(1.0, release.set)
    timer.start()
    with caplog.at_level(logging.WARNING, logger="oneshot_bench"), store.lock("run"):
        pass  # waited for the holder, then got the lock
    thread.join()
    (warning,) = [r.getMessage() for r in caplog.records if "being computed by another process" in r.getMessage()]
    assert "pid" in warning and "kill -CONT" in warning and "Ctrl-C stops waiting" in warning
    with open(tmp_path / "runs" / "run" / ".lock") as handle:  # released: nobody holds it now
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_progress_writes_are_spaced_by_their_own_cost(monkeypatch):
    """With writes costing 50 ms and scoring 1 ms an arch, writes stay a small share of the time; with writes far
    cheaper than scoring, every arch is kept as before (a simulated clock: the case is the arithmetic, not the
    machine's load)."""
    import evaluators.runner as runner

    clock = [0.0]
    monkeypatch.setattr(runner.time, "perf_counter", lambda: clock[0])

    def scoring(write_seconds: float, archs: int) -> int:
        writes = []

        def write():
            clock[0] += write_seconds
            writes.append(clock[0])

        fake = SimpleNamespace(_saved_at=0.0, _save_seconds=0.0, _write_progress=write)
        fake.save_progress = lambda: runner.PreparedRun.save_progress(fake)
        for _ in range(archs):
            clock[0] += 0.001  # scoring one arch
            runner.PreparedRun.save_progress_unless_recent(fake)
        return len(writes)

    assert scoring(0.00001, 50) == 50
    slow = scoring(0.05, 50)
    assert 1 <= slow <= 3  # 50 ms writes at most every 0.5 s: about 10% of the time in writes, not 98%


def test_two_report_builds_to_one_folder_both_finish(confined, tmp_path, monkeypatch):
    """The probe delayed one build's final rename while a second build ran; with one fixed temporary name the
    second took the first's file away. Here the second build runs entirely inside the first's rename."""
    import os

    from conftest import copy_record

    from reports.build import build_report

    results, out = tmp_path / "results", tmp_path / "results" / "report"
    copy_record(results, "record_v1_nb201-spos.json")
    real_replace, started, nested = os.replace, [], []

    def replace(src, dst):
        if str(dst).endswith("report.html") and not started:
            started.append(src)
            nested.append(build_report(results, out))  # the other build, start to finish, mid-rename
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    first = build_report(results, out)
    assert nested == [first] and "1 finished run record(s)" in first.read_text()
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []


def test_every_entry_point_turns_ctrl_c_into_one_line_and_exit_130(capsys):
    """Every `python -m` command of the project goes through run_command (or, run.py and reports/__main__.py, its
    own handler after install_interrupt_once); run_command makes a KeyboardInterrupt one line and exit 130."""
    from oneshot_bench.interrupts import INTERRUPTED_CODE, run_command

    mains = [p for folder in ("reports", "evaluators", "oneshot_bench") for p in (REPO / folder).rglob("*.py")
             if 'if __name__ == "__main__":' in p.read_text() and p.name != "interrupts.py"] + [REPO / "run.py"]
    assert len(mains) >= 7
    for path in mains:
        block = path.read_text().split('if __name__ == "__main__":', 1)[1]
        assert "run_command(" in block or "install_interrupt_once()" in block, path

    def interrupted():
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    try:
        assert run_command(interrupted) == INTERRUPTED_CODE
        assert run_command(lambda: 3) == 3 and run_command(lambda: None) == 0
    finally:
        signal.signal(signal.SIGINT, previous)  # (run_command installs the once-only handler)
    err = capsys.readouterr().err
    assert err.count("interrupted") == 1 and "Traceback" not in err
