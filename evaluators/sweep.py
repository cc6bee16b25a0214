"""Hyperparameter sweeps: an Optuna study (Optuna >= 4) whose trials are ordinary benchmark runs.

`python run.py +sweep=<method> space=... budget=...` runs one worker; start the same command again (another shell,
machine or SLURM job) and the workers share the study through its storage. Each trial is `run_benchmark` on the
composed config plus the trial's values, so its record lands in `results/runs/` like any run's, and a trial that
repeats a finished run reuses its record.

- Storage: SQLite by default; PostgreSQL (or any SQLAlchemy URL) for workers on several machines; `journal:<path>`
  for Optuna's JournalStorage on a shared file system without a database server (no heartbeats there).
- Database storages run `study.optimize` with trial heartbeats: a worker killed mid-trial stops beating, and after
  the grace period the next worker to start a trial marks it FAILED and re-queues its parameters
  (`RetryHeartbeatStaleTrialCallback`, the name `RetryFailedTrialCallback` has in Optuna 5). A trial interrupted
  by Ctrl-C (KeyboardInterrupt) is re-queued the same way at once, on every storage, and the worker stops: the
  next worker resumes that run from its checkpoint.
- A seeded sampler (`sweep.sampler_seed`) draws its seed from the seed, the worker index and the number of trials
  already in the study, so a restarted worker does not propose its first start's values again.
- A SQLite file is probed read-only before Optuna opens it: a database of another application (tables, none of
  Optuna's) is refused untouched, and an error opening a storage is raised at once (only a lost race on creating
  the schema or the study is retried).
- `n_trials` counts COMPLETE trials over all workers (`MaxTrialsCallback`). Two workers could both start the last
  trial, so a trial first checks the quota: trials still running with a smaller number have the first claim; a
  trial that cannot be needed ends PRUNED with the user attribute `surplus` (never COMPLETE), so the study holds
  exactly `n_trials` COMPLETE ones.
- `sweep.objectives` names summary fields, each optimized in its own sense (accuracies and correlations up, costs
  and sizes down: `Summary.direction`). Two or more make a multi-objective study (Optuna's multi-objective
  samplers); `results/sweeps/<study>.json` records every trial, with the Pareto-optimal ones marked, for the report.

This replaces Hydra's Optuna sweeper plugin, which requires optuna<3. Its parameter syntax (choice, interval,
int(interval), tag(log, interval), range) is kept, parsed by Hydra's own override grammar.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import time
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from oneshot_bench.atomic import write_json
from oneshot_bench.config import Mode, RunConfig, SweepConfig, from_dictconfig
from oneshot_bench.errors import ConfigError, DivergenceError, UserError
from oneshot_bench.names import path_inside
from search_spaces import SPACES

from .record import Summary

log = logging.getLogger("oneshot_bench")

SWEEPS_DIR = "sweeps"  # under results_dir: one JSON summary per study, read by the report
SURPLUS = "surplus"  # user attribute of a trial that ended PRUNED because the study already had its n_trials
ERROR = "error"  # user attribute of a trial whose run failed (diverged, or gave a non-finite objective)


# ---- search dimensions ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    key: str  # a config key, e.g. method.params.topk
    distribution: Any  # optuna.distributions.BaseDistribution

    def suggest(self, trial: Any) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(self.key, d.choices)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.key, d.low, d.high, step=d.step, log=d.log)
        assert isinstance(d, FloatDistribution)
        return trial.suggest_float(self.key, d.low, d.high, step=d.step, log=d.log)

    def end_values(self) -> list[Any]:
        """The values a bad range shows first: every choice, or both ends."""
        from optuna.distributions import CategoricalDistribution

        d = self.distribution
        return list(d.choices) if isinstance(d, CategoricalDistribution) else [d.low, d.high]


def parse_dimension(key: str, spec: str) -> Dimension:
    """`choice(a, b)`, `interval(lo, hi)` (floats), `int(interval(lo, hi))` (integers), `tag(log, interval(lo,
    hi))`, `range(start, stop[, step])` (integers or floats, stop excluded as in Python) -> an Optuna
    distribution."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    where = f"sweep.params.{key}"
    try:
        override = OverridesParser.create().parse_overrides([f"{key}={spec}"])[0]
    except HydraException as e:
        raise ConfigError(f"{where}={spec!r} does not parse: {str(e).splitlines()[0]}. Use choice(a, b), "
                          f"interval(lo, hi), tag(log, interval(lo, hi)) or range(start, stop, step).") from None
    value = override.value()
    if isinstance(value, ChoiceSweep):
        if not value.list:
            raise ConfigError(f"{where}={spec!r} has no choices.")
        return Dimension(key, CategoricalDistribution(list(value.list)))
    if isinstance(value, RangeSweep):
        if value.step is not None and value.step <= 0:
            raise ConfigError(f"{where}={spec!r}: the range's step must be positive.")
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{where}={spec!r} is empty (range's stop is excluded).")
        if all(isinstance(v, int) for v in values):
            return Dimension(key, IntDistribution(values[0], values[-1], step=int(value.step)))
        return Dimension(key, FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step)))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if value.start >= value.end:
            raise ConfigError(f"{where}={spec!r}: the interval's low end must be below its high end.")
        if log_scale and value.start <= 0:
            raise ConfigError(f"{where}={spec!r}: a log interval needs a positive low end.")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return Dimension(key, IntDistribution(value.start, value.end, log=log_scale))
        return Dimension(key, FloatDistribution(float(value.start), float(value.end), log=log_scale))
    raise ConfigError(f"{where}={spec!r} is a single value, not a search dimension. Use choice(...), "
                      f"interval(...), tag(log, interval(...)) or range(...); fix a value with {key}=<value>.")


# ---- the study -----------------------------------------------------------------------------------------------------

def study_name_of(cfg: RunConfig) -> str:
    sweep = cfg.sweep
    assert sweep is not None
    if sweep.study_name:
        return sweep.study_name
    return (f"{cfg.method.name}-{cfg.space.name}-{cfg.data.name}-{cfg.budget.name}-"
            f"{'+'.join(sweep.objectives)}")


STORAGE_ENV = "ONESHOT_SWEEP_STORAGE"  # sweep.storage's default comes from it (SweepConfig.storage)


def storage_origin(sweep: SweepConfig, fixed: frozenset[str] = frozenset()) -> str:
    """Where `sweep.storage`'s value came from, for its errors: the environment variable when it is set and the
    command line does not give sweep.storage, else the key."""
    if "sweep.storage" not in fixed and os.environ.get(STORAGE_ENV) == sweep.storage:
        return STORAGE_ENV
    return "sweep.storage"


def open_storage(sweep: SweepConfig, origin: str = "sweep.storage") -> Any:
    """The Optuna storage of `sweep.storage`, with heartbeats and the stale-trial retry for database URLs. A SQLite
    file that holds another application's tables is refused untouched (`check_sqlite_file`); `origin` names where
    the URL came from (`storage_origin`)."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend
    from sqlalchemy.exc import SQLAlchemyError

    url = sweep.storage
    fix = (f"Unset {STORAGE_ENV} or set it to" if origin == STORAGE_ENV else "Use")
    try:
        path = local_file(url)
        if url.startswith("sqlite") and path is not None:
            check_sqlite_file(path, f"{origin}={redact(url)!r}", must_exist=False)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if url.startswith("journal:"):
            assert path is not None
            return JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        return _retry_race(lambda: RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=sweep.heartbeat_interval,
            grace_period=sweep.grace_period or 2 * sweep.heartbeat_interval,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=sweep.max_retry)),
            "the storage's tables")
    except (ImportError, ValueError, OSError, optuna.exceptions.StorageInternalError, SQLAlchemyError) as e:
        raise ConfigError(f"{origin}={redact(url)!r} cannot be opened: {str(e).splitlines()[0]}. {fix} "
                          f"sqlite:///<file>, postgresql://user:password@host/db or journal:<file>.") from None


OPTUNA_TABLES = {"studies", "version_info"}  # every Optuna RDB schema has them


def check_sqlite_file(path: Path, what: str, must_exist: bool) -> None:
    """Refuse a SQLite file that is not an Optuna storage, before SQLAlchemy opens it (Optuna creates its 13
    tables in any database it opens): it is probed read-only (`mode=ro`, nothing written), and a file that is no
    database, or holds tables but not Optuna's, is refused. A missing file (with `must_exist`) or one without tables
    (a storage another worker is creating) is another matter: refused with `must_exist`, else left to Optuna."""
    import sqlite3
    from urllib.parse import quote

    fix = ("name the storage a sweep wrote (its sweep.storage)" if must_exist else
           "name a new file for the study, e.g. sqlite:///results/sweeps.db")
    if not path.exists():
        if must_exist:
            raise ConfigError(f"{what}: no database file {path}; check the path (a sweep's default storage is "
                              f"sqlite:///results/sweeps.db).")
        return
    if not path.is_file():
        raise ConfigError(f"{what}: {path} is not a file; name a SQLite file.")
    try:
        with closing(sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        raise ConfigError(f"{what}: {path} cannot be read as a SQLite database ({e}); {fix}.") from None
    if tables and not OPTUNA_TABLES <= tables:
        raise ConfigError(f"{what}: {path} is another application's database (table(s) "
                          f"{', '.join(sorted(tables)[:3])}{', ...' if len(tables) > 3 else ''}; no Optuna tables), "
                          f"left untouched; {fix}.")
    if not tables and must_exist:
        raise ConfigError(f"{what}: {path} holds no Optuna study (no tables); {fix}.")


def local_file(url: str) -> Optional[Path]:
    """The file a `journal:<path>` or `sqlite:///<path>` storage URL names (None for a database server)."""
    for prefix in ("journal://", "journal:", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix))
    return None


RACE_SIGNS = ("already exists", "duplicate", "unique", "locked")  # what a lost creation race says, any database


def _retry_race(create: Any, what: str, attempts: int = 8) -> Any:
    """Workers started at the same moment on a fresh storage race on creating its schema or the study (SQLite:
    "table already exists" or "database is locked", PostgreSQL: a unique-key violation): retry with a random
    back-off. Any other error (a file that cannot be opened, a server that cannot be reached) is raised at once:
    retrying a URL that cannot work only delays its error."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            return create()
        except (IntegrityError, OperationalError, ProgrammingError, optuna.exceptions.DuplicatedStudyError,
                optuna.exceptions.StorageInternalError) as e:
            chain, cause = [], e
            while cause is not None:
                chain.append(str(cause).lower())
                cause = cause.__cause__ or cause.__context__
            race = isinstance(e, (IntegrityError, optuna.exceptions.DuplicatedStudyError)) or any(
                sign in text for text in chain for sign in RACE_SIGNS)
            if attempt == attempts - 1 or not race:
                raise
            log.info("%s: being created by another worker (%s); retrying", what, type(e).__name__)
            time.sleep(random.uniform(0.2, 1.0) * (attempt + 1))


def redact(url: str) -> str:
    """A storage URL without its password (it goes into logs and the results folder)."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def make_sampler(sweep: SweepConfig, trials_so_far: int = 0) -> Any:
    """The study's sampler. A seeded one draws its seed from (sampler_seed, worker, trials already in the study):
    workers of one command differ, and a worker restarted on a study with trials does not replay the values its
    first start proposed (a plain offset would collide: worker 1 at 0 trials = worker 0 at 1)."""
    import numpy as np
    import optuna

    seed = None if sweep.sampler_seed is None else int(
        np.random.SeedSequence([sweep.sampler_seed, sweep.worker, trials_so_far]).generate_state(1)[0])
    return {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed)}[str(sweep.sampler)]()


def open_study(cfg: RunConfig, origin: str = "sweep.storage") -> Any:
    import optuna

    sweep = cfg.sweep
    assert sweep is not None
    storage = open_storage(sweep, origin)
    name = study_name_of(cfg)
    directions = [Summary.direction(name) for name in sweep.objectives]
    study = _retry_race(lambda: optuna.create_study(storage=storage, study_name=name, directions=directions,
                                                    load_if_exists=True),
                        f"study {name}")
    study.sampler = make_sampler(sweep, len(study.get_trials(deepcopy=False)))
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"study {name!r} in {redact(sweep.storage)} optimizes "
                          f"{[d.name.lower() for d in study.directions]}, not {directions} of sweep.objectives; "
                          f"name another study with sweep.study_name=<name>.")
    if study.metric_names is not None and list(study.metric_names) != list(sweep.objectives):
        raise ConfigError(f"study {name!r} in {redact(sweep.storage)} optimizes {list(study.metric_names)}, not "
                          f"{list(sweep.objectives)}; name another study with sweep.study_name=<name>.")
    study.set_metric_names(list(sweep.objectives))
    return study


# ---- one worker ----------------------------------------------------------------------------------------------------

def trial_config(base: Any, values: dict[str, Any]) -> RunConfig:
    """The run a trial makes: the composed config (a DictConfig) with the trial's values, as a plain run."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    cfg = base.copy()
    OmegaConf.set_struct(cfg, False)
    for key, value in values.items():
        try:
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
        except OmegaConfBaseException as e:
            hint = " (an integer key needs int(interval(lo, hi)))" if isinstance(value, float) else ""
            raise ConfigError(f"{key}={value!r}: {str(e).strip().splitlines()[0]}{hint}") from None
    OmegaConf.update(cfg, "execution.mode", str(Mode.search), merge=False)
    OmegaConf.update(cfg, "sweep", None, merge=False)
    return from_dictconfig(cfg)


def check_sweep(base: Any, cfg: RunConfig, fixed: frozenset[str] = frozenset()) -> list[Dimension]:
    """Everything a sweep can get wrong, before any trial: objectives, the dimensions' syntax, and every choice or
    end value of each dimension as a planned run (unknown keys, out-of-range values, unsupported pairs). A
    dimension whose key the command line fixes (`fixed`) is not searched: the user's value holds."""
    from .runner import plan_run

    sweep = cfg.sweep
    assert sweep is not None
    valid = Summary.objectives()
    for name in sweep.objectives:
        if name not in valid:
            raise ConfigError(f"unknown sweep.objectives entry {name!r}. Valid: {', '.join(valid)}.")
    if "final_anytime_auc" in sweep.objectives and not SPACES.get(cfg.space.name).multi_exit:
        raise ConfigError(f"sweep.objectives names final_anytime_auc, which only a multi-exit space has (space="
                          f"anytime); space {cfg.space.name!r} has one classifier: use final_test_acc.")
    dimensions = []
    for key, spec in sweep.params.items():
        if key in fixed:
            log.info("%s is fixed on the command line: not searched", key)
            continue
        dimensions.append(parse_dimension(key, spec))
    if not dimensions:
        raise ConfigError(f"sweep.params: every dimension ({', '.join(sweep.params)}) is fixed on the command line, "
                          f"so there is nothing to search; leave one free, or run without +sweep.")
    for dim in dimensions:
        for value in dim.end_values():
            try:
                plan_run(trial_config(base, {dim.key: value}))
            except UserError as e:
                raise ConfigError(f"sweep.params.{dim.key}: the value {value!r} is not accepted: {e}") from None
    return dimensions


def claim_slot(study: Any, trial: Any, n_trials: int, heartbeats: bool, poll_seconds: float) -> bool:
    """Whether this trial is needed to reach `n_trials` COMPLETE trials. Trials started before it (running, by
    storage id: numbers can tie under concurrent inserts) have the first claim, so this one waits while they could
    still fill the quota (they finish, fail, or, once their worker's heartbeat is stale, are failed and re-queued);
    re-queued trials waiting to run are claims too. Without heartbeats a dead worker's trial would be waited for
    forever, so there a trial runs whenever the quota is not yet met (and may pass it by a trial or two)."""
    import optuna
    from optuna.trial import TrialState

    while True:
        trials = study.get_trials(deepcopy=False)
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        if complete >= n_trials:
            study.stop()
            return False
        if not heartbeats:
            return True
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        earlier = sum(t.state == TrialState.RUNNING and t._trial_id < trial._trial_id for t in trials)
        if complete + earlier + waiting < n_trials:
            return True
        if waiting:  # the queue fills the quota: this trial steps aside, and the worker takes a queued one next
            return False
        time.sleep(poll_seconds)
        # study.optimize failed stale trials just before this trial was asked; while waiting, this does it: a
        # killed worker's trial becomes FAILED and is re-queued
        optuna.storages.fail_stale_trials(study)


def run_sweep(base: Any, cfg: RunConfig, fixed: frozenset[str] = frozenset()) -> Any:
    """One worker of the study: runs trials until the study has `n_trials` COMPLETE ones; returns the study.
    `fixed`: config keys set on the command line (a dimension with such a key is not searched)."""
    import math

    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from .runner import run_benchmark

    sweep = cfg.sweep
    assert sweep is not None
    # heartbeats, the stale-trial retry and metric names are flagged experimental since Optuna 2.8-3.2
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    dimensions = check_sweep(base, cfg, fixed)
    # inside results_dir/sweeps/, checked before the study is opened (sweep.study_name is a checked name; the
    # default one is built from checked names, but may still be too long for a file name)
    summary_path = path_inside(Path(cfg.execution.results_dir) / SWEEPS_DIR, f"{study_name_of(cfg)}.json",
                               key="sweep.study_name")
    study = open_study(cfg, storage_origin(sweep, fixed))
    heartbeats = is_heartbeat_enabled(study._storage)
    if not heartbeats:
        log.warning("storage %s has no trial heartbeats: a killed worker's trial stays RUNNING and is not retried, "
                    "and concurrent workers may pass the quota of %d COMPLETE trials by a trial or two",
                    redact(sweep.storage), sweep.n_trials)
    max_failed = sweep.max_failed if sweep.max_failed is not None else sweep.n_trials
    failures: list[str] = []

    def objective(trial: Any) -> list[float]:
        try:
            return run_trial(trial)
        except KeyboardInterrupt:  # Ctrl-C: retried like a killed worker's trial; the worker stops (exit 130)
            requeue_interrupted(study, trial, sweep.max_retry)
            raise

    def run_trial(trial: Any) -> list[float]:
        values = {dim.key: dim.suggest(trial) for dim in dimensions}
        failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if ERROR in t.user_attrs]
        if len(failed) >= max_failed:  # a search space whose runs keep failing would otherwise never end
            failures.append(failed[-1].user_attrs[ERROR])
            study.stop()
            trial.set_user_attr(SURPLUS, True)
            raise optuna.TrialPruned(f"{len(failed)} trials failed (sweep.max_failed={max_failed})")
        if not claim_slot(study, trial, sweep.n_trials, heartbeats, poll_seconds=min(5, sweep.heartbeat_interval)):
            trial.set_user_attr(SURPLUS, True)
            raise optuna.TrialPruned(f"the study has or is about to have its {sweep.n_trials} COMPLETE trials")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            record = run_benchmark(trial_config(base, values))
        except DivergenceError as e:  # a bad region of the space: the trial fails, the study goes on
            trial.set_user_attr(ERROR, str(e))
            raise
        trial.set_user_attr("run_id", record.run_id)
        result = [float(getattr(record.summary, name)) for name in sweep.objectives]
        bad = [name for name, v in zip(sweep.objectives, result, strict=True) if not math.isfinite(v)]
        if bad:  # Optuna fails the trial on a non-finite value; say which
            trial.set_user_attr(ERROR, f"objective {', '.join(bad)} is not finite in run {record.run_id}")
        return result

    def save_summary(study: Any, _: Any = None) -> None:
        write_json(summary_path, study_summary(study, cfg))

    done = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if done < sweep.n_trials:
        log.info("study %s in %s: %d of %d COMPLETE trials; this is worker %d", study.study_name,
                 redact(sweep.storage), done, sweep.n_trials, sweep.worker)
        study.optimize(objective, callbacks=[MaxTrialsCallback(sweep.n_trials, states=(TrialState.COMPLETE,)),
                                             save_summary],
                       catch=(DivergenceError,), gc_after_trial=True)
    save_summary(study)
    if failures:
        raise UserError(f"sweep {study.study_name} stopped: {max_failed} trials failed (sweep.max_failed), the "
                        f"last with: {failures[-1]}. Narrow sweep.params away from the failing values.")
    return study


class _DropInterruptedTrialLog(logging.Filter):
    """Optuna logs a trial failed by KeyboardInterrupt with its whole traceback and a second line; `requeue_interrupted`
    says it in one line instead."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.prefix = f"Trial {number} failed"

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def requeue_interrupted(study: Any, trial: Any, max_retry: int) -> None:
    """A trial interrupted in this worker (Ctrl-C, KeyboardInterrupt in the objective) is queued again with its
    parameters, exactly as the stale-trial retry queues a killed worker's (`RetryHeartbeatStaleTrialCallback`: the
    same system attributes, so sweep.max_retry counts it, and `retry_of` names it), on every storage. The next worker
    to start runs it first, and its run resumes from its checkpoint; Optuna then marks this trial FAIL."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    logging.getLogger("optuna.study._optimize").addFilter(_DropInterruptedTrialLog(trial.number))
    frozen = study._storage.get_trial(trial._trial_id)
    before = len(study.get_trials(deepcopy=False))
    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen)
    queued = len(study.get_trials(deepcopy=False)) > before
    log.warning("trial %d interrupted: %s", trial.number,
                "queued again with its parameters; the next worker resumes its run" if queued else
                f"not queued again (retried sweep.max_retry={max_retry} times already)")


def best_numbers(study: Any) -> set[int]:
    """The numbers of the best trial(s): the Pareto-optimal ones of a multi-objective study; none before the first
    COMPLETE trial (Optuna raises there)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return set()
    return {t.number for t in study.best_trials}


def params_text(params: dict[str, Any]) -> str:
    """A trial's values as `name=value, ...`, each key by its last part (topk, not method.params.topk)."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.4g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                     for k, v in params.items())


def study_summary(study: Any, cfg: RunConfig) -> dict[str, Any]:
    """A plain-JSON view of the study for the report: its setting, objectives and every trial."""

    sweep = cfg.sweep
    assert sweep is not None
    trials = study.get_trials(deepcopy=False)
    best = best_numbers(study)
    return {
        "study_name": study.study_name, "storage": redact(sweep.storage),
        # a list, not a mapping: the JSON writer sorts mapping keys, and the values follow this order
        "objectives": [{"name": name, "direction": Summary.direction(name)} for name in sweep.objectives],
        "n_trials": sweep.n_trials, "params": dict(sweep.params),
        "setting": {"method": cfg.method.name, "space": cfg.space.name, "data": cfg.data.name,
                    "budget": cfg.budget.name, "seed": cfg.seed},
        "trials": [{
            "number": t.number, "state": t.state.name, "params": t.params, "values": t.values,
            "run_id": t.user_attrs.get("run_id"), "surplus": bool(t.user_attrs.get(SURPLUS)),
            "retry_of": t.system_attrs.get("failed_trial"), "pareto_optimal": t.number in best,
            "started": t.datetime_start.isoformat() if t.datetime_start else None,
            "finished": t.datetime_complete.isoformat() if t.datetime_complete else None,
        } for t in trials],
    }


def print_trials(study: Any, objectives: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"study {study.study_name}")
    for column in ("trial", "state", *objectives, "params", "note", "run"):
        table.add_column(column)
    best = best_numbers(study)
    for t in study.get_trials(deepcopy=False):
        values = [f"{v:.4g}" for v in t.values] if t.values else [""] * len(objectives)
        note = ", ".join(n for n, on in (("best" if len(objectives) == 1 else "Pareto-optimal", t.number in best),
                                         (f"retry of {t.system_attrs.get('failed_trial')}",
                                          "failed_trial" in t.system_attrs),
                                         ("surplus", bool(t.user_attrs.get(SURPLUS)))) if on)
        table.add_row(str(t.number), t.state.name, *values, params_text(t.params), note,
                      t.user_attrs.get("run_id", ""))
    console = Console()
    if not console.is_terminal:  # a log or a pipe: full rows instead of 80 columns of wrapped cells
        console = Console(width=200)
    console.print(table)


def open_existing(url: str, study_name: Optional[str]) -> Any:
    """Load a study to inspect it (python -m evaluators.sweep <storage> [<study>])."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        storage: Any = url
        path = local_file(url)
        if url.startswith("sqlite") and path is not None:  # probed read-only: Optuna would add its tables
            check_sqlite_file(path, f"storage {redact(url)!r}", must_exist=True)
        if path is not None and not path.is_file():
            raise ValueError(f"no {'journal' if url.startswith('journal:') else 'database'} file {path}")
        if url.startswith("journal:"):
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            storage = JournalStorage(JournalFileBackend(str(path)))
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    except (ImportError, ValueError, SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise ConfigError(f"storage {redact(url)!r} cannot be opened: {str(e).splitlines()[0]}.") from None
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(f"{redact(url)} holds {len(names)} studies ({', '.join(names)}); name one.")
        study_name = names[0]
    if study_name not in names:
        raise ConfigError(f"no study {study_name!r} in {redact(url)}; it holds: {', '.join(names) or 'none'}.")
    return optuna.load_study(study_name=study_name, storage=storage)


def main(args: list[str]) -> int:
    """`python -m evaluators.sweep <storage URL> [<study name>]`: print a study's trials; 0, or 2 with one `error:`
    line (the storage is only read: a file that is not an Optuna storage is refused untouched)."""
    import sys

    try:
        if not args or len(args) > 2:
            raise ConfigError("usage: python -m evaluators.sweep <storage URL> [<study name>]")
        loaded = open_existing(args[0], args[1] if len(args) > 1 else None)
        print_trials(loaded, loaded.metric_names or [f"value {i}" for i in range(len(loaded.directions))])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    import sys

    from oneshot_bench.interrupts import run_command

    sys.exit(run_command(lambda: main(sys.argv[1:])))
