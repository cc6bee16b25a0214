"""`python -m reports.reproduce --jobs N`: N runs at once, each at its share of the cores, seeds interleaved, each
run's output in its own log, and a failure that stops new runs without losing the ones in flight."""
from __future__ import annotations

import sys
from pathlib import Path

from reports import reproduce

# A stand-in for `python run.py ...`: writes its environment's thread count and its arguments, then, when told,
# waits until its partner has started (proof that both run at once) or exits with the given status.
FAKE_RUN = """
import os, sys, time
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
here = Path(args["marks"])
(here / (args["name"] + ".started")).write_text(os.environ.get("OMP_NUM_THREADS", "") + " " + " ".join(sys.argv[1:]))
for wait in ("partner", "after_exit_of"):
    if wait in args:
        deadline = time.time() + 60
        while not (here / (args[wait] + (".started" if wait == "partner" else ".exited"))).exists():
            if time.time() > deadline:
                sys.exit(9)
            time.sleep(0.05)
if "after_exit_of" in args:
    time.sleep(1.0)  # long after the failure was seen: this run must still be let finish
print("fake run", args["name"])
(here / (args["name"] + ".exited")).write_text(args.get("exit", "0"))
sys.exit(int(args.get("exit", 0)))
"""


def fake(name: str, marks: Path, seed: int, **extra) -> tuple[str, list[str]]:
    cmd = [sys.executable, "-c", FAKE_RUN, f"name={name}", f"marks={marks}", f"seed={seed}",
           f"hydra.run.dir={marks}/hydra/{name}", *[f"{k}={v}" for k, v in extra.items()]]
    return name, cmd


def test_seeds_are_interleaved_each_in_its_order():
    commands = [fake(f"{row}-s{seed}", Path("/x"), seed) for seed in (0, 1, 2) for row in ("a", "b")]
    assert [label for label, _ in reproduce.interleave_seeds(commands)] == [
        "a-s0", "a-s1", "a-s2", "b-s0", "b-s1", "b-s2"]


def test_two_jobs_run_side_by_side_at_their_share_of_the_cores(tmp_path, capsys):
    commands = [fake("a", tmp_path, 0, partner="b"), fake("b", tmp_path, 1, partner="a")]
    failure, timings, wall = reproduce.run_all(commands, {"PATH": "/usr/bin:/bin"}, 2, tmp_path / "logs")
    assert failure == 0 and sorted(label for label, _ in timings) == ["a", "b"]
    threads = str(reproduce.thread_share(2))
    for name in ("a", "b"):
        started = (tmp_path / f"{name}.started").read_text().split()
        assert started[0] == threads and f"execution.threads={threads}" in started
        assert (tmp_path / "logs" / f"{name}.log").read_text() == f"fake run {name}\n"
    assert capsys.readouterr().out.count("== done") == 2


def test_a_given_thread_count_is_kept(tmp_path):
    commands = [fake("a", tmp_path, 0, **{"execution.threads": 3})]
    assert reproduce.run_all(commands, {}, 2, tmp_path / "logs")[0] == 0
    assert (tmp_path / "a.started").read_text().split().count("execution.threads=3") == 1


def test_a_failure_starts_nothing_new_and_waits_for_the_runs_in_flight(tmp_path, capsys):
    commands = [fake("bad", tmp_path, 0, exit=3), fake("slow", tmp_path, 1, after_exit_of="bad"),
                fake("never", tmp_path, 0)]
    failure, timings, _ = reproduce.run_all(commands, {}, 2, tmp_path / "logs")
    assert failure == 3
    assert sorted(label for label, _ in timings) == ["bad", "slow"]
    assert (tmp_path / "slow.exited").read_text() == "0"  # the run in flight was let finish, not killed
    assert (tmp_path / "logs" / "slow.log").read_text() == "fake run slow\n"
    assert not (tmp_path / "never.started").exists()
    err = capsys.readouterr().err
    assert "'bad' failed (exit 3); no new run starts, waiting for the 1 in flight" in err
    assert f"'bad' failed (exit 3), its output: {tmp_path / 'logs' / 'bad.log'}" in err


def test_one_job_runs_in_order_on_the_console(tmp_path, capfd):
    commands = [fake("first", tmp_path, 0), fake("second", tmp_path, 0, exit=4), fake("third", tmp_path, 0)]
    failure, timings, _ = reproduce.run_all(commands, {}, 1, tmp_path / "logs")
    assert failure == 4 and [label for label, _ in timings] == ["first", "second"]
    out = capfd.readouterr().out
    assert out.index("fake run first") < out.index("== second") and not (tmp_path / "logs").exists()
    assert "execution.threads" not in (tmp_path / "first.started").read_text()


def test_a_given_thread_count_sets_the_runs_openmp_pool_too(tmp_path):
    commands = [fake("a", tmp_path, 0, **{"execution.threads": 3})]
    assert reproduce.run_all(commands, {"OMP_NUM_THREADS": "1"}, 1, tmp_path / "logs")[0] == 0
    assert (tmp_path / "a.started").read_text().split()[0] == "3"


def test_an_interrupt_ends_the_runs_in_flight_and_keeps_going_possible(tmp_path, monkeypatch, capsys):
    """Ctrl-C while runs are in flight: they are terminated (no orphan keeps training), logs closed, exit 130."""
    commands = [fake("a", tmp_path, 0, partner="never-started"), fake("b", tmp_path, 1, partner="never-started")]
    real_sleep, calls = reproduce.time.sleep, []

    def interrupt_once_both_started(seconds):  # time.sleep is also the one subprocess's wait polls with
        if not calls and (tmp_path / "a.started").exists() and (tmp_path / "b.started").exists():
            calls.append(seconds)
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr(reproduce.time, "sleep", interrupt_once_both_started)
    started = []
    real_start = reproduce._start
    monkeypatch.setattr(reproduce, "_start", lambda *a: started.append(real_start(*a)) or started[-1])
    failure, timings, _ = reproduce.run_all(commands, {}, 2, tmp_path / "logs")
    assert failure == 130 and timings == []
    assert all(r.proc.poll() is not None for r in started) and len(started) == 2  # both ended, none orphaned
    assert all(r.log.closed for r in started)
    assert "finished runs are kept" in capsys.readouterr().err


def test_jobs_below_one_is_refused_before_anything_runs(tmp_path, capsys):
    assert reproduce.main(["nb201_weight_sharing", "--jobs", "0", "--results", str(tmp_path / "r")]) == 2
    assert "--jobs 0" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_seeds_pick_among_the_tables_own(monkeypatch, tmp_path, capsys):
    assert reproduce.main(["nb201_weight_sharing", "--seeds", "7", "--results", str(tmp_path / "r")]) == 2
    assert "--seeds 7: nb201_weight_sharing reproduces seeds [0, 1, 2]" in capsys.readouterr().err
    ran = []
    monkeypatch.setattr(reproduce, "run_all", lambda commands, *a: ran.extend(commands) or (1, [], 0.0))
    monkeypatch.setenv("ONESHOT_CIFAR10_ROOT", str(tmp_path))
    assert reproduce.main(["nb201_weight_sharing", "--seeds", "2", "0", "--results", str(tmp_path / "r")]) == 1
    seeds = {next(a for a in c if a.startswith("seed=")) for _, c in ran}
    assert seeds == {"seed=0", "seed=2"} and len(ran) == 2 * len({c[2] for _, c in ran})
