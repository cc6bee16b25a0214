"""Optuna sweeps through Hydra's Optuna sweeper (conf/sweep/<method>.yaml): the search spaces name real
hyperparameters, and two sweep workers running at once against one storage lose no trial."""
from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
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

    method = sweep_method(sweep_file)
    assert sweep_file.stem == method
    from methods import METHODS

    fields = {f.name for f in dataclasses.fields(METHODS.get(method).Hparams)}
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"+sweep={method}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert "optuna" in sweeper._target_.lower() and sweeper.direction == "maximize"
    assert cfg.method.name == method
    assert sweeper.storage == os.environ.get("ONESHOT_SWEEP_STORAGE", "sqlite:///results/sweeps.db")
    assert sweeper.study_name == f"{method}-{cfg.space.name}-{cfg.data.name}-{cfg.budget.name}-kendall_tau"
    assert sweeper.params, "a sweep needs at least one hyperparameter"
    for key in sweeper.params:
        assert key.startswith("method.params."), key
        assert key.removeprefix("method.params.") in fields, f"{key} is not a field of {method}'s Hparams"
    # every range parses as an Optuna distribution, and its end values are accepted by the method
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.distributions import CategoricalDistribution

    from methods.base import get_method

    distributions, fixed = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    assert not fixed and set(distributions) == set(sweeper.params)
    for key, dist in distributions.items():
        values = dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        for value in values:
            get_method(method, {key.removeprefix("method.params."): value})


# ---- storages the two-worker test runs against -------------------------------------------------------------------
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


# ---- two workers, one study --------------------------------------------------------------------------------------
def start_worker(i: int, n_trials: int, storage: str, tmp_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "run.py", "-m", "+sweep=random", "space=mbnet_chain", "budget=smoke", "device=cpu",
           f"execution.results_dir={tmp_path / 'results'}", f"hydra.sweep.dir={tmp_path / f'worker{i}'}",
           "hydra.sweeper.study_name=two-workers", f"hydra.sweeper.n_trials={n_trials}",
           f"hydra.sweeper.sampler.seed={i}",
           # keep each trial to seconds: one standalone epoch per architecture (a one-value search dimension)
           "method.params.epochs_per_arch=choice(1)"]
    env = {**os.environ, "ONESHOT_SWEEP_STORAGE": storage, "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115 - closed by the test after the worker exits
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_two_sweep_workers_on_one_storage_lose_no_trial(storage_url, tmp_path):
    import optuna

    n_trials = {1: 2, 2: 3}
    # both workers start at once on a fresh storage: the CreateOptunaStudy callback creates schema and study first
    workers = {i: start_worker(i, n, storage_url, tmp_path) for i, n in n_trials.items()}
    for i, proc in workers.items():
        rc = proc.wait(timeout=600)
        assert rc == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]

    study = optuna.load_study(study_name="two-workers", storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == len(complete) == sum(n_trials.values())
    assert sorted(t.number for t in trials) == list(range(sum(n_trials.values())))  # distinct, none skipped
    assert all(t.params == {"method.params.epochs_per_arch": 1} for t in complete)
    # every trial's value is the objective (kendall_tau) of a record the workers wrote
    from reports.records import load_records

    taus = {round(r.summary.kendall_tau, 12) for r in load_records(tmp_path / "results")}
    assert {round(t.value, 12) for t in complete} <= taus
    # the workers really ran at once: one worker runs its trials one after another, so two trials whose
    # ask-to-tell intervals overlap were run by different workers at the same time
    assert any(a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete
               for a in complete for b in complete if a.number < b.number)


def test_workers_starting_at_once_create_one_study(tmp_path):
    """The sweep callback's study creation, run by four processes released at the same instant on a fresh SQLite
    storage: all succeed and exactly one study exists (without the retry, the schema race crashes some of them)."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'race.db'}"
    go = tmp_path / "go"
    code = ("import sys, time, pathlib\n"
            "from oneshot_bench.sweep_study import create_study_once\n"
            "import optuna, sqlalchemy\n"
            "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.001)\n"
            "create_study_once(sys.argv[1], 'race', 'maximize')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, storage, str(go)], cwd=REPO, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    import time

    time.sleep(3)  # every process imported and is polling
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    summaries = optuna.get_all_study_summaries(storage)
    assert [s.study_name for s in summaries] == ["race"]
    assert summaries[0].direction == optuna.study.StudyDirection.MAXIMIZE


def test_the_callback_is_configured_for_every_sweep():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+sweep=spos"], return_hydra_config=True)
    targets = [c._target_ for c in cfg.hydra.callbacks.values()]
    assert "oneshot_bench.sweep_study.CreateOptunaStudy" in targets
