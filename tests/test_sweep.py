"""Optuna sweeps (evaluators/sweep.py, conf/sweep/<method>.yaml): the search spaces name real hyperparameters and
parse; two workers on one storage end with exactly the requested COMPLETE trials; a worker killed with SIGKILL
mid-trial leaves a FAILED trial that another worker retries; a multi-objective study's Pareto front reaches the
report."""
from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

SWEEPS = sorted((REPO / "conf" / "sweep").glob("*.yaml"))


def sweep_method(sweep_file: Path) -> str:
    spec = yaml.safe_load(sweep_file.read_text())
    (method,) = [d["override /method"] for d in spec["defaults"] if isinstance(d, dict) and "override /method" in d]
    return method


@pytest.mark.parametrize("sweep_file", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_space_names_the_methods_hyperparameters(sweep_file):
    from hydra import compose, initialize_config_dir

    from evaluators.hydra_config import register_configs
    from evaluators.sweep import parse_dimension
    from methods import METHODS
    from methods.base import get_method
    from oneshot_bench.config import Mode, from_dictconfig

    register_configs()
    method = sweep_method(sweep_file)
    assert sweep_file.stem == method
    fields = {f.name for f in dataclasses.fields(METHODS.get(method).Hparams)}
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = from_dictconfig(compose("config", overrides=[f"+sweep={method}"]))
    assert cfg.method.name == method and cfg.execution.mode == Mode.sweep and cfg.sweep is not None
    assert cfg.sweep.storage == os.environ.get("ONESHOT_SWEEP_STORAGE", "sqlite:///results/sweeps.db")
    from evaluators.record import Summary

    assert set(cfg.sweep.objectives) <= set(Summary.objectives())
    # evolution-only hyperparameters cannot move the supernet's ranking: those studies optimize the found arch
    assert list(cfg.sweep.objectives) == (["final_test_acc"] if method == "spos" else ["kendall_tau"])
    assert cfg.sweep.params, "a sweep needs at least one hyperparameter"
    for key, spec in cfg.sweep.params.items():
        assert key.startswith("method.params."), key
        assert key.removeprefix("method.params.") in fields, f"{key} is not a field of {method}'s Hparams"
        for value in parse_dimension(key, spec).end_values():  # every choice and both ends are accepted
            get_method(method, {key.removeprefix("method.params."): value})


def test_dimensions_parse_to_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from evaluators.sweep import parse_dimension
    from oneshot_bench.errors import ConfigError

    assert parse_dimension("k", "choice(5, 10, 20)").distribution == CategoricalDistribution([5, 10, 20])
    assert parse_dimension("k", "choice(node, point)").distribution == CategoricalDistribution(["node", "point"])
    assert parse_dimension("k", "interval(0.05, 0.5)").distribution == FloatDistribution(0.05, 0.5)
    assert parse_dimension("k", "int(interval(1, 5))").distribution == IntDistribution(1, 5)
    assert parse_dimension("k", "tag(log, interval(1e-4, 1e-2))").distribution == FloatDistribution(1e-4, 1e-2,
                                                                                                      log=True)
    assert parse_dimension("k", "range(1, 10, 2)").distribution == IntDistribution(1, 9, step=2)
    for bad, needle in [("interval(5)", "does not parse"), ("3", "single value"), ("interval(2, 1)", "low end"),
                        ("tag(log, interval(0, 1))", "positive"), ("range(3, 3)", "empty")]:
        with pytest.raises(ConfigError, match=needle):
            parse_dimension("k", bad)


# ---- storages the worker tests run against -----------------------------------------------------------------------
def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI containers run as root and have the `postgres` user
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _postgres_missing() -> str:
    missing = [b for b in ("initdb", "pg_ctl") if shutil.which(b) is None]
    if missing:
        return f"{' and '.join(missing)} not on PATH (apt-get install postgresql)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 not installed (pip install -c constraints.txt -e '.[dev]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a `postgres` user to run the server"
        if shutil.which("runuser") is None:
            return "running as root without `runuser`"
    return ""


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a Unix socket in a private temp folder, stopped and deleted afterwards."""
    reason = _postgres_missing()
    if reason:
        pytest.skip(f"no PostgreSQL server available: {reason}")
    base = Path(tempfile.mkdtemp(prefix="oneshot-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", "5432"  # the port only names the socket file: no TCP listener
    try:
        subprocess.run(_as_postgres(["initdb", "-D", str(data), "-A", "trust", "-U", "bench", "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(_as_postgres(["pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                                     f"-k {base} -p {port} -c listen_addresses='' -c fsync=off", "start"]),
                       check=True, capture_output=True, timeout=120)
        yield f"postgresql+psycopg2://bench@/postgres?host={base}&port={port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_postgres(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


# SQLite in the default run (seconds); PostgreSQL (a server started per test) with the slow tests
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeps.db'}"
    return request.getfixturevalue("postgres_url")


# ---- workers -------------------------------------------------------------------------------------------------------
def start_worker(i: int, tmp_path: Path, storage: str, study: str, n_trials: int, *extra: str,
                 epochs: str = "choice(1, 2, 3)") -> subprocess.Popen:
    """`python run.py +sweep=random ...` as its own process: random search on the small mbnet_chain space, each trial
    seconds long (one to three standalone epochs per architecture on the digits data)."""
    cmd = [sys.executable, "run.py", "+sweep=random", "space=mbnet_chain", "budget=smoke", "device=cpu",
           f"execution.results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / f'hydra{i}'}",
           f"sweep.study_name={study}", f"sweep.n_trials={n_trials}",
           f"sweep.worker={i}", "sweep.sampler=random", "sweep.sampler_seed=0",
           f"sweep.params={{method.params.epochs_per_arch: '{epochs}'}}", *extra]
    # the storage as the environment gives it (a PostgreSQL URL's `?host=` would need quoting on the command line)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ONESHOT_SWEEP_STORAGE": storage}
    log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115 - closed by the test after the worker exits
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def finish(workers: dict[int, subprocess.Popen], tmp_path: Path) -> None:
    for i, proc in workers.items():
        rc = proc.wait(timeout=600)
        assert rc == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]


def records_by_id(tmp_path: Path) -> dict:
    from reports.records import load_records

    return {r.run_id: r for r in load_records(tmp_path / "results")}


def test_two_sweep_workers_on_one_storage_reach_exactly_the_requested_trials(storage_url, tmp_path):
    import optuna
    from optuna.trial import TrialState

    n_trials = 5
    # both start at once on a fresh storage: creating its schema and the study is retried on the race
    finish({i: start_worker(i, tmp_path, storage_url, "two-workers", n_trials) for i in (0, 1)}, tmp_path)

    study = optuna.load_study(study_name="two-workers", storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials  # none lost, none extra
    # a trial that found the quota met before doing any work ends PRUNED as surplus, never COMPLETE or FAIL
    assert all(t.state == TrialState.PRUNED and t.user_attrs.get("surplus") for t in trials if t not in complete)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both workers ran trials
    # every COMPLETE trial's value is the objective of the record its run wrote
    records = records_by_id(tmp_path)
    for t in complete:
        assert t.values == [records[t.user_attrs["run_id"]].summary.kendall_tau]
    summary = json.loads(next((tmp_path / "results" / "sweeps").glob("two-workers.json")).read_text())
    assert sum(t["state"] == "COMPLETE" for t in summary["trials"]) == n_trials
    assert "password" not in summary["storage"]


def trial_states(db: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial; [] while the worker has created the database file but not yet its tables."""
    with sqlite3.connect(db, timeout=30) as con:
        try:
            return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retried_trial_number
def test_a_worker_killed_mid_trial_leaves_a_failed_trial_that_is_retried(tmp_path):
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    db = tmp_path / "sweeps.db"
    storage = f"sqlite:///{db}"
    fast = ("sweep.heartbeat_interval=1", "sweep.grace_period=3")
    victim = start_worker(0, tmp_path, storage, "killed", 1, *fast, epochs="choice(3)")
    deadline = time.monotonic() + 300
    while not (db.exists() and ("RUNNING" in {s for _, s in trial_states(db)})):
        assert victim.poll() is None and time.monotonic() < deadline, (tmp_path / "worker0.log").read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(3)  # well inside the trial's run (several seconds of training)
    assert victim.poll() is None
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert trial_states(db) == [(0, "RUNNING")] and not records_by_id(tmp_path)  # killed mid-trial: no record

    finish({1: start_worker(1, tmp_path, storage, "killed", 1, *fast, epochs="choice(3)")}, tmp_path)
    study = optuna.load_study(study_name="killed", storage=storage)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert trials[0].state == TrialState.FAIL  # its heartbeat went stale: failed, not left RUNNING
    (retry,) = [t for t in trials.values() if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[0].params
    assert [t.number for t in trials.values() if t.state == TrialState.COMPLETE] == [retry.number]
    assert retry.user_attrs["run_id"] in records_by_id(tmp_path)


def test_a_multi_objective_study_on_a_journal_reaches_the_report_with_its_pareto_front(tmp_path):
    from reports.build import build_report

    # not in alphabetical order: the values must stay with their objective through the JSON summary and the report
    objectives = "sweep.objectives=[search_device_seconds,kendall_tau]"
    # JournalStorage, the no-server storage for a shared file system, with two workers: no heartbeats there, so a
    # worker runs a trial whenever the quota is not met (it never spins on trials it cannot watch)
    journal = f"journal:{tmp_path / 'study.log'}"
    finish({i: start_worker(i, tmp_path, journal, "pareto", 3, objectives) for i in (0, 1)}, tmp_path)
    summary = json.loads((tmp_path / "results" / "sweeps" / "pareto.json").read_text())
    assert summary["objectives"] == [{"name": "search_device_seconds", "direction": "minimize"},
                                     {"name": "kendall_tau", "direction": "maximize"}]
    complete = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    assert 3 <= len(complete) <= 4  # the quota, passed by at most one trial per extra worker without heartbeats
    assert len(summary["trials"]) <= len(complete) + 2
    records = records_by_id(tmp_path)
    for t in complete:
        s = records[t["run_id"]].summary
        assert t["values"] == [s.search_device_seconds, s.kendall_tau]
    front = [t for t in complete if t["pareto_optimal"]]
    assert front
    for t in front:  # no COMPLETE trial is at least as fast and at least as well ranked, and better in one
        assert not any(o["values"][0] <= t["values"][0] and o["values"][1] >= t["values"][1]
                       and o["values"] != t["values"] for o in complete)
    html = build_report(tmp_path / "results", tmp_path / "report").read_text()
    assert 'id="sweep-pareto"' in html and 'id="sweep-pareto-pareto"' in html
    assert html.count('data-state="COMPLETE"') == len(complete) and "Pareto-optimal" in html
    header = html[html.index('id="sweep-pareto"'):]
    assert header.index("search_device_seconds (minimize)") < header.index("kendall_tau (maximize)")


def test_a_bad_sweep_is_refused_before_any_trial(tmp_path, capsys):
    sys.path.insert(0, str(REPO))
    import run

    db = tmp_path / "s.db"
    base = [f"execution.results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'hydra'}",
            f"sweep.storage=sqlite:///{db}"]
    cases = [
        (["+sweep=spos", "sweep.objectives=[bogus]"], ["sweep.objectives", "bogus", "kendall_tau"]),
        (["+sweep=spos", "sweep.params={method.params.topk: 'choice(0, 5)'}"],
         ["sweep.params.method.params.topk", "0", ">= 1"]),
        (["+sweep=spos", "sweep.params={method.params.topk: 'interval(5)'}"], ["sweep.params.method.params.topk"]),
        (["+sweep=spos", "++sweep.params={execution.threads: 'choice(1, 2)'}"], ["execution"]),
        (["+sweep=spos", "sweep.params={method.params.lr: 'choice(1, 2)'}"], ["sweep.params", "add one with ++"]),
        (["+sweep=spos", "sweep.n_trials=0"], ["sweep.n_trials", ">= 1"]),
        (["+sweep=spos", "sweep.heartbeat_interval=5", "sweep.grace_period=5"], ["sweep.grace_period"]),
        (["+sweep=spos", "sweep.params={method.params.topk: 'interval(5, 20)'}"], ["topk", "int(interval"]),
        (["+sweep=spos", "sweep.params={method.params.topk: 'range(20, 4, -5)'}"], ["step must be positive"]),
        (["+sweep=spos", "method.params.topk=7", "method.params.mutation_prob=0.2"], ["nothing to search"]),
        (["+sweep=spos", "sweep.objectives=[final_anytime_auc]"], ["final_anytime_auc", "multi-exit", "nb201"]),
    ]
    for args, needles in cases:
        code = run.cli([*base, *args])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, (args, err)
        for needle in needles:
            assert needle in lines[0], (args, lines[0])
        assert not db.exists() and not (tmp_path / "results" / "runs").exists()  # nothing opened or run
    code = run.cli([f"execution.results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'hydra'}",
                    "+sweep=spos", "sweep.storage=nosuch://x"])
    err = capsys.readouterr().err
    assert code == 2 and "sweep.storage='nosuch://x'" in err and "sqlite:///" in err
    code = run.cli([f"hydra.run.dir={tmp_path / 'hydra'}", "mode=sweep"])
    assert code == 2 and "+sweep=<method>" in capsys.readouterr().err


def test_a_value_fixed_on_the_command_line_is_not_searched():
    from hydra import compose, initialize_config_dir

    from evaluators.hydra_config import register_configs
    from evaluators.sweep import check_sweep
    from oneshot_bench.config import from_dictconfig

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        base = compose("config", overrides=["+sweep=spos", "method.params.topk=7"])
    keys = [d.key for d in check_sweep(base, from_dictconfig(base), frozenset({"method.params.topk"}))]
    assert keys == ["method.params.mutation_prob"]


def test_a_sweep_whose_runs_keep_diverging_stops_with_one_error(tmp_path):
    """Diverging runs are FAILED trials and the study goes on, up to sweep.max_failed; then one clear error."""
    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{tmp_path / 's.db'}"
    cmd = [sys.executable, "run.py", "+sweep=darts", "space=nb201", "budget=smoke", "device=cpu",
           "method.params.order=1", f"execution.results_dir={tmp_path / 'results'}",
           f"hydra.run.dir={tmp_path / 'hydra'}", f"sweep.storage={storage}", "sweep.study_name=diverge",
           "sweep.n_trials=5", "sweep.max_failed=2",
           "sweep.params={method.params.arch_lr: 'choice(1000.0, 2000.0)', method.params.arch_beta1: 'choice(0.5)',"
           " method.params.arch_weight_decay: 'choice(0.001)', method.params.alpha_init_std: 'choice(0.001)'}"]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-3000:]
    assert "sweep.max_failed" in errors[0] and "method.params.arch_lr" in errors[0]
    trials = optuna.load_study(study_name="diverge", storage=storage).get_trials()
    assert [t.state for t in trials if t.state != TrialState.PRUNED] == [TrialState.FAIL] * 2
