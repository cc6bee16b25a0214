"""The run record: what one benchmark run measured and how, as typed dataclasses with a JSON form.

Everything that reads or writes `record.json` (the runner, run.py's summary, the reports, sweeps) goes through
`RunRecord`, so a key is spelled in one place. Loading validates the layout (missing, unknown or mistyped fields
raise `RecordError` naming the field), checks ranges (`check_ranges`: a record's correlations must be those of its
own proxy and truth lists, recomputed with scipy, about 4 ms a record) and migrates older layouts (`record_version`
1) to the current one. This module never imports torch, and numpy and scipy only once a record is range-checked: a
report can be rebuilt from records alone, quickly.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from oneshot_bench.atomic import read_json, write_json
from oneshot_bench.budgets import plumbing_sizes

RECORD_VERSION = 2
# cost phases, in the order they run. Search cost = supernet_train + derive + selection (the method's own work,
# what the papers' GPU-days count); anytime = scoring the shared sample part-way through training, and ranking =
# scoring it at the end (evaluation, reported apart); final = training (or looking up) the selected archs.
PHASES = ("supernet_train", "anytime", "ranking", "derive", "selection", "final")
SEARCH_PHASES = ("supernet_train", "derive", "selection")


# the methods whose ranking recalibrated every BN before `scoring.bn_mode` existed (issue 28): their older records
# carry no mode and used recalibrate_all
LEGACY_RECALIBRATING_METHODS = frozenset({"spos", "greedynas", "oneshot", "proxylessnas", "enas", "darts"})


class RecordError(ValueError):
    """A record.json that does not have the layout of any known record version."""


@dataclass
class PhaseCost:
    device_seconds: float
    gpu_days: float


@dataclass
class Cost:
    """Device-seconds per phase on one device; a "GPU-day" measured on a CPU carries the CPU's name. Search cost
    excludes the benchmark-only scoring of the shared sample (`evaluation_device_seconds`)."""

    device: str
    device_type: str
    phases: dict[str, PhaseCost]
    search_device_seconds: float
    search_gpu_days: float
    evaluation_device_seconds: float = 0.0


@dataclass
class RankingMetrics:
    """How well a proxy ranks the shared sample: correlations with 95% bootstrap CIs and precision@k."""

    n: int
    kendall_tau: float
    kendall_tau_ci_low: float
    kendall_tau_ci_high: float
    spearman_rho: float
    spearman_rho_ci_low: float
    spearman_rho_ci_high: float
    pearson_r: float
    pearson_r_ci_low: float
    pearson_r_ci_high: float
    precision_at_top10pct: float
    precision_at_5: float
    degenerate: bool  # a constant proxy (or truth) ranks nothing: correlations 0.0, intervals NaN
    bootstrap_valid: int  # resamples in which every correlation was defined (-1: not recorded, older records)


@dataclass
class ExtraProxy(RankingMetrics):
    """A method's secondary proxy (e.g. DARTS' alpha log-likelihood) with its scores of the sample."""

    proxy: list[float]


@dataclass
class AnytimePoint:
    """The method's ranking of the shared sample part-way through its training (budget.ranking_every)."""

    epoch: int  # after this many search epochs
    train_seconds: float  # device-seconds of training so far (scoring time excluded)
    n: int  # archs scored: the first n of the shared sample (budget.anytime_sample)
    kendall_tau: float
    kendall_tau_ci_low: float
    kendall_tau_ci_high: float


@dataclass
class Ranking(RankingMetrics):
    """The method's proxy against the ground truth on the shared sample, arch by arch; its free references (the
    same sample ranked by parameter count and FLOPs, no training) and, with budget.ranking_every, its anytime
    curve (the last point is this ranking)."""

    archs: list[str]
    proxy: list[float]
    truth: list[float]
    extra_proxies: dict[str, ExtraProxy] = field(default_factory=dict)
    references: dict[str, ExtraProxy] = field(default_factory=dict)
    anytime: list[AnytimePoint] = field(default_factory=list)
    # how BatchNorm was set while the method's supernet scored the sample (oneshot_bench.config.BnMode); None for
    # methods that do not score by supernet accuracy, and for records written before modes existed (see
    # RunRecord.bn_mode)
    bn_mode: Optional[str] = None

    def best_reference(self) -> Optional[tuple[str, ExtraProxy]]:
        """The reference with the highest Kendall tau on this sample."""
        if not self.references:
            return None
        return max(self.references.items(), key=lambda item: item[1].kendall_tau)


@dataclass
class Finalist:
    """One final training (or lookup) of a selection protocol: which arch, its size, its accuracy."""

    arch: str
    params: int
    flops: int
    test_acc: float
    source: str  # "tabular" (looked up) or "retrained"
    n_images: int  # test images behind test_acc
    seed_index: int = 0  # which of several final trainings of the arch (Top-Best's seeds)
    proxy_score: Optional[float] = None  # the method's own score of the arch
    short_val_acc: Optional[float] = None  # Top-Best: validation accuracy (multi-exit: AUC) after the short training
    val_acc: Optional[float] = None
    seconds: Optional[float] = None
    correct: Optional[str] = None  # per-test-image results, hex of packed bits (retrained archs: paired tests)
    # multi-exit spaces: each classifier's cumulative FLOPs and test accuracy, and the anytime AUC (exits.curve)
    anytime: Optional[dict[str, Any]] = None


@dataclass
class Found:
    """The method's derived architecture, its size (counted at the network its accuracy refers to, `sized_at`) and
    its final accuracy."""

    arch: str
    params: int
    flops: int
    net: dict[str, Any]  # the NetConfig params and FLOPs were counted at
    resolution: int  # and the image side
    final_test_acc: float
    final_source: str  # how the final accuracy was obtained: a table lookup ("tabular") or "retrained"
    final_val_acc: Optional[float] = None
    final_seconds: Optional[float] = None
    space_worst_decile_acc: Optional[float] = None
    sized_at: str = ""  # which network `net` is, in words (the benchmark's network, or the budget's final one)
    # the selection protocol: its name and settings, and every final training it made (final_test_acc and params
    # are their means; std and standard error say how much they vary)
    selection: dict[str, Any] = field(default_factory=lambda: {"name": "top1"})
    finalists: list[Finalist] = field(default_factory=list)
    final_test_acc_std: float = math.nan  # across finalists (NaN with one)
    final_test_acc_se: float = math.nan  # standard error of final_test_acc: binomial with one, std/sqrt(n) with n
    params_std: float = math.nan
    final_n_images: int = 0
    # multi-exit spaces: the space's hand-designed baseline arch, trained with the found arch's final protocol and
    # seed (reference work, not charged to the method): its string, params, FLOPs and anytime curve
    anytime_baseline: Optional[dict[str, Any]] = None


@dataclass
class Summary:
    """Headline numbers of a run, flat: what reports tabulate and what a sweep's `objective` names."""

    kendall_tau: float
    spearman_rho: float
    pearson_r: float
    precision_at_top10pct: float
    precision_at_5: float
    final_test_acc: float
    params: int
    flops: int
    search_device_seconds: float
    search_gpu_days: float
    supernet_train_seconds: float = 0.0
    anytime_seconds: float = 0.0
    ranking_seconds: float = 0.0
    derive_seconds: float = 0.0
    selection_seconds: float = 0.0
    final_seconds: float = 0.0
    evaluation_device_seconds: float = 0.0  # scoring the shared benchmark sample: reported apart from search
    final_test_acc_se: float = math.nan
    final_anytime_auc: float = math.nan  # multi-exit spaces: the finalists' mean anytime AUC (NaN otherwise)

    @classmethod
    def objectives(cls) -> list[str]:
        """The names a sweep may optimize."""
        return [f.name for f in dataclasses.fields(cls)]

    # every other field is a cost, a size or an error: lower is better
    HIGHER_IS_BETTER = ("kendall_tau", "spearman_rho", "pearson_r", "precision_at_top10pct", "precision_at_5",
                        "final_test_acc", "final_anytime_auc")

    @classmethod
    def direction(cls, name: str) -> str:
        """How a sweep optimizes the field: "maximize" or "minimize"."""
        return "maximize" if name in cls.HIGHER_IS_BETTER else "minimize"

    @classmethod
    def of(cls, ranking: Ranking, found: Found, cost: Cost) -> Summary:
        phases = {f"{p}_seconds": c.device_seconds for p, c in cost.phases.items() if p in PHASES}
        return cls(kendall_tau=ranking.kendall_tau, spearman_rho=ranking.spearman_rho, pearson_r=ranking.pearson_r,
                   precision_at_top10pct=ranking.precision_at_top10pct, precision_at_5=ranking.precision_at_5,
                   final_test_acc=found.final_test_acc, params=found.params, flops=found.flops,
                   search_device_seconds=cost.search_device_seconds, search_gpu_days=cost.search_gpu_days,
                   evaluation_device_seconds=cost.evaluation_device_seconds,
                   final_test_acc_se=found.final_test_acc_se, final_anytime_auc=_mean_auc(found), **phases)


def _mean_auc(found: Found) -> float:
    aucs = [f.anytime["anytime_auc"] for f in found.finalists if f.anytime]
    return sum(aucs) / len(aucs) if aucs else math.nan


@dataclass
class Hashes:
    data_sha256: str
    truth: dict[str, Any]  # the ground-truth source's description (its name, file and sha256, or training setup)


@dataclass
class Code:
    """Which code made the record (evaluators/fingerprint.py): a sha256 over the source of its method's, space's and
    truth source's modules and of the shared training code, and each file's sha256 (path -> sha256)."""

    fingerprint: str
    files: dict[str, str]


@dataclass
class RunRecord:
    record_version: int
    run_id: str
    finished_at: str
    config: dict[str, Any]  # the run's identity: the resolved configuration without the execution group
    method: str
    space: str
    data: str
    budget: str
    seed: int
    versions: dict[str, str]
    git_commit: str
    execution: dict[str, Any]  # how it executed (threads, ...): recorded, not part of the identity
    hashes: Hashes
    cost: Cost
    truth_seconds: float  # ground-truth work for the ranking sample (never charged to the method)
    history: list[dict[str, Any]]  # one row per search epoch
    ranking: Ranking
    found: Found
    artifacts: list[str]  # files written beside record.json by the method
    summary: Summary
    # beside git_commit: the fingerprint of the code that made it; None for a record written before fingerprints
    # ("legacy"). Not part of the identity: a changed fingerprint keeps the run id (execution.reuse decides)
    code: Optional[Code] = None
    # the layout it was read from (not a field, never written): a migrated record_version 1 record's config was
    # rewritten by the migration, so it no longer hashes to its run id (evaluators/store.py foreign_record)
    read_from_version: ClassVar[int] = RECORD_VERSION

    # ---- JSON -------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        if not isinstance(data, dict):
            raise RecordError(f"a record is a JSON object, got {type(data).__name__}")
        version = data.get("record_version")
        if version == 1:
            data = _migrate_v1(data)
        elif version != RECORD_VERSION:
            raise RecordError(f"unknown record_version {version!r} (this version reads 1 and {RECORD_VERSION})")
        record = _build(cls, data, "record")
        record.read_from_version = version
        record.check_consistency()
        record.check_ranges()
        return record

    def check_consistency(self) -> None:
        """What types cannot say: the ranking's lists describe the same archs."""
        r = self.ranking
        if not len(r.archs) == len(r.proxy) == len(r.truth) == r.n:
            raise RecordError(f"record.ranking has {len(r.archs)} archs, {len(r.proxy)} proxy scores and "
                              f"{len(r.truth)} truths for n={r.n}")
        for name, extra in {**r.extra_proxies, **r.references}.items():
            if len(extra.proxy) != r.n:
                raise RecordError(f"record.ranking.extra_proxies.{name} has {len(extra.proxy)} scores for n={r.n}")

    def check_ranges(self) -> None:
        """What a run can have measured (RecordError naming the field otherwise): correlations in [-1, 1] that
        match the record's own proxy and truth lists, accuracies in [0, 100], seeds, sizes and costs finite and in
        range. NaN stays allowed where it means "not measured" (a spread of one value, a CI without valid
        resamples, the AUC of a single-exit space)."""
        check_record_ranges(self)

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        """Read and validate a record.json; RecordError names the file and what is wrong with it."""
        try:
            return cls.from_dict(read_json(Path(path)))
        except RecordError as e:
            raise RecordError(f"{path}: {e}") from None
        except (OSError, ValueError) as e:  # unreadable or not JSON
            raise RecordError(f"{path}: not a readable record ({e})") from None

    # ---- derived views -----------------------------------------------------------------------------------------------
    @property
    def method_params(self) -> dict[str, Any]:
        return dict(self.config.get("method", {}).get("params", {}))

    @property
    def bn_mode(self) -> Optional[str]:
        """The BN scoring mode of the method's ranking: the record's own, or, for a record written before modes
        existed by a method that scored by supernet accuracy then, the one protocol there was (recalibrate_all)."""
        if self.ranking.bn_mode is not None:
            return self.ranking.bn_mode
        return "recalibrate_all" if self.method in LEGACY_RECALIBRATING_METHODS else None

    @property
    def plumbing_check(self) -> Optional[str]:
        """Why this run checks that the code runs rather than measures anything, in words: 8x8 digits, or a budget
        at or below budget=smoke's sizes (read from the resolved values: a budget's name is only a label, and
        `budget=smoke budget.name=paper` is still seconds of training); None for a measurement."""
        digits = ["data=digits (8x8 digit images)"] if self.data == "digits" else []
        return ", ".join(digits + plumbing_sizes(self.config.get("budget") or {})) or None


# ---- validation: ranges ------------------------------------------------------------------------------------------

MAX_SEED = 2**63  # seeds reach torch.manual_seed, which takes a 64-bit value
MAX_INT = 2**63  # no integer a record holds (a count, a size in params or FLOPs, a seed) reaches it
CORRELATION_TOLERANCE = 1e-6  # a stored correlation against its recomputation (float noise across library versions)
_SLACK = 1e-9  # bootstrap quantiles of a perfect correlation may land a rounding step past 1


def _as_float(where: str, value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits (valid JSON) has no float
        raise RecordError(f"{where} is an integer of {len(str(abs(int(value))))} digits, past any float") from None


def check_in_range(where: str, value: Optional[float], low: float, high: float, *, nan_ok: bool = False) -> None:
    """`value` lies in [low, high] (None passes: an optional field left out; NaN passes only where `nan_ok`)."""
    if value is None:
        return
    value = _as_float(where, value)
    if nan_ok and math.isnan(value):
        return
    if not (math.isfinite(value) and low - _SLACK <= value <= high + _SLACK):
        raise RecordError(f"{where} is {value!r}, outside [{low:g}, {high:g}]"
                          + (" (NaN: not measured, is not allowed here)" if math.isnan(value) else ""))


def check_cost(where: str, value: Optional[float], *, nan_ok: bool = False) -> None:
    """A cost, size or count: finite and >= 0 (None passes, NaN only where `nan_ok`)."""
    if value is None:
        return
    value = _as_float(where, value)
    if nan_ok and math.isnan(value):
        return
    if not (math.isfinite(value) and value >= 0):
        raise RecordError(f"{where} is {value!r}; it must be a finite number >= 0")


def _check_metrics(where: str, m: RankingMetrics, proxy: list[float], truth: list[float]) -> None:
    """One ranking's metrics: in range, and its correlations those of its proxy against the truth, recomputed as
    evaluators.ranking does (a constant side ranks nothing: 0.0)."""
    check_cost(f"{where}.n", m.n)
    for name in ("kendall_tau", "spearman_rho", "pearson_r"):
        check_in_range(f"{where}.{name}", getattr(m, name), -1.0, 1.0)
        for end in ("ci_low", "ci_high"):
            check_in_range(f"{where}.{name}_{end}", getattr(m, f"{name}_{end}"), -1.0, 1.0, nan_ok=True)
    for name in ("precision_at_top10pct", "precision_at_5"):
        check_in_range(f"{where}.{name}", getattr(m, name), 0.0, 1.0)
    if m.bootstrap_valid < -1:
        raise RecordError(f"{where}.bootstrap_valid is {m.bootstrap_valid}, below -1 (not recorded)")
    bad = next((i for i, v in enumerate(proxy) if not math.isfinite(v)), None)
    if bad is not None:  # evaluators.ranking refuses to rank non-finite scores, so no run wrote one
        raise RecordError(f"{where}.proxy[{bad}] is {proxy[bad]!r}; a ranked score is finite")
    import numpy as np  # (lazily: loading a record stays free of numpy until its ranges are checked)

    from .ranking import CORRELATIONS, correlation

    p, t = np.asarray(proxy, dtype=float), np.asarray(truth, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, fn in CORRELATIONS.items():
            stored, recomputed = getattr(m, name), correlation(fn, p, t)
            if not abs(stored - recomputed) <= CORRELATION_TOLERANCE:
                raise RecordError(f"{where}.{name} is {stored!r}, but its proxy and truth lists give {recomputed!r}")


def check_record_ranges(r: RunRecord) -> None:
    """RunRecord.check_ranges."""
    if not 0 <= r.seed < MAX_SEED:
        raise RecordError(f"record.seed is {r.seed}, outside [0, 2**63)")
    rk, f, s, c = r.ranking, r.found, r.summary, r.cost
    for i, acc in enumerate(rk.truth):
        check_in_range(f"record.ranking.truth[{i}]", acc, 0.0, 100.0)
    _check_metrics("record.ranking", rk, rk.proxy, rk.truth)
    for group in ("extra_proxies", "references"):
        for name, extra in getattr(rk, group).items():
            _check_metrics(f"record.ranking.{group}.{name}", extra, extra.proxy, rk.truth)
    for i, point in enumerate(rk.anytime):
        where = f"record.ranking.anytime[{i}]"
        check_in_range(f"{where}.kendall_tau", point.kendall_tau, -1.0, 1.0)
        check_in_range(f"{where}.kendall_tau_ci_low", point.kendall_tau_ci_low, -1.0, 1.0, nan_ok=True)
        check_in_range(f"{where}.kendall_tau_ci_high", point.kendall_tau_ci_high, -1.0, 1.0, nan_ok=True)
        check_cost(f"{where}.train_seconds", point.train_seconds)
        check_cost(f"{where}.epoch", point.epoch)
        check_cost(f"{where}.n", point.n)
    for name in ("final_test_acc", "final_val_acc", "space_worst_decile_acc"):
        check_in_range(f"record.found.{name}", getattr(f, name), 0.0, 100.0)
    for name in ("final_test_acc_std", "final_test_acc_se"):
        check_in_range(f"record.found.{name}", getattr(f, name), 0.0, 100.0, nan_ok=True)
    for name in ("params", "flops", "final_n_images", "resolution", "final_seconds"):
        check_cost(f"record.found.{name}", getattr(f, name))
    check_cost("record.found.params_std", f.params_std, nan_ok=True)
    for i, fin in enumerate(f.finalists):
        where = f"record.found.finalists[{i}]"
        for name in ("test_acc", "val_acc", "short_val_acc"):
            check_in_range(f"{where}.{name}", getattr(fin, name), 0.0, 100.0)
        for name in ("params", "flops", "n_images", "seed_index", "seconds"):
            check_cost(f"{where}.{name}", getattr(fin, name))
    for name in ("kendall_tau", "spearman_rho", "pearson_r"):  # (the reports read the ranking's, checked above)
        check_in_range(f"record.summary.{name}", getattr(s, name), -1.0, 1.0)
    for name in ("precision_at_top10pct", "precision_at_5"):
        check_in_range(f"record.summary.{name}", getattr(s, name), 0.0, 1.0)
    check_in_range("record.summary.final_test_acc", s.final_test_acc, 0.0, 100.0)
    check_in_range("record.summary.final_test_acc_se", s.final_test_acc_se, 0.0, 100.0, nan_ok=True)
    check_in_range("record.summary.final_anytime_auc", s.final_anytime_auc, 0.0, 100.0, nan_ok=True)
    for name in ("params", "flops", "search_device_seconds", "search_gpu_days", "supernet_train_seconds",
                 "anytime_seconds", "ranking_seconds", "derive_seconds", "selection_seconds", "final_seconds",
                 "evaluation_device_seconds"):
        check_cost(f"record.summary.{name}", getattr(s, name))
    for phase, cost in c.phases.items():
        check_cost(f"record.cost.phases.{phase}.device_seconds", cost.device_seconds)
        check_cost(f"record.cost.phases.{phase}.gpu_days", cost.gpu_days)
    for name in ("search_device_seconds", "search_gpu_days", "evaluation_device_seconds"):
        check_cost(f"record.cost.{name}", getattr(c, name))
    check_cost("record.truth_seconds", r.truth_seconds)


# ---- validation: JSON values -> typed dataclasses ----------------------------------------------------------------

def typed(cls: type, data: Any, where: str) -> Any:
    """JSON values as the dataclass `cls`, validated as a record's parts are (RecordError naming the field): what
    the run's other state files (evaluators/state.py) reuse."""
    return _build(cls, data, where)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a record dataclass, resolved once (get_type_hints was half of a load's time)."""
    return typing.get_type_hints(cls)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise RecordError(f"{where} must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecordError(f"{where} has unknown field(s) {unknown}")
    hints = _type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where} lacks the field {name!r}")
            continue
        values[name] = _convert(hints[name], data[name], f"{where}.{name}")
    return cls(**values)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list, got {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object, got {type(value).__name__}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if value is None:  # a NaN written by an older json.dump as null
            return math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where} must be a number, got {value!r}")
        return _as_float(where, value)
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where} must be an integer, got {value!r}")
        if abs(value) >= MAX_INT:  # (range checks compare with floats, which a longer integer overflows)
            raise RecordError(f"{where} is an integer of {len(str(abs(value)))} digits, past 2**63, which no count, "
                              f"size or seed of a run reaches")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise RecordError(f"{where} must be a {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"{where}: no conversion for type {tp!r}")


# ---- older layouts -------------------------------------------------------------------------------------------------

# record_version 1 named the ground truth by kind and an NB201 column; these are the sources it meant
_V1_TABULAR = {"nb201": "nb201", "mbnet_chain": "nas_bench_macro"}


def _migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """record_version 1 (before the truth registry and the execution group): `config.truth` was auto | tabular |
    trained with a separate `truth_dataset`, device and determinism were left out of the config, `ranking.n` was
    a float, and summary phase keys existed only for the phases a run had."""
    out = dict(data, record_version=RECORD_VERSION)
    cost = out.get("cost", {})
    if isinstance(cost, dict) and isinstance(cost.get("phases"), dict):  # v1 charged the sample scoring as search
        seconds = {k: v.get("device_seconds", 0.0) for k, v in cost["phases"].items() if isinstance(v, dict)}
        search = sum(v for k, v in seconds.items() if k in SEARCH_PHASES)
        cost.update(search_device_seconds=search, search_gpu_days=search / 86400.0,
                    evaluation_device_seconds=seconds.get("ranking", 0.0))
        if isinstance(out.get("summary"), dict):
            out["summary"].update(search_device_seconds=search, search_gpu_days=search / 86400.0)
    config = dict(data.get("config", {}))
    kind = data.get("hashes", {}).get("truth", {}).get("kind")
    dataset = config.pop("truth_dataset", "cifar10")
    if kind == "tabular" and data.get("space") in _V1_TABULAR:
        name = _V1_TABULAR[data["space"]]
        config["truth"] = {"name": name, "params": {"dataset": dataset} if name == "nb201" else {}}
    else:
        config["truth"] = {"name": "trained", "params": {}}
    for ranking in (out.get("ranking", {}), *out.get("ranking", {}).get("extra_proxies", {}).values()):
        if isinstance(ranking, dict):
            proxy, truth = ranking.get("proxy", []), out.get("ranking", {}).get("truth", [])
            constant = len(set(proxy)) <= 1 or len(set(truth)) <= 1
            ranking.setdefault("degenerate", constant)
            ranking.setdefault("bootstrap_valid", -1)
            if constant:  # v1 wrote NaN for a constant proxy; the one policy now is 0.0, flagged degenerate
                for name in ("kendall_tau", "spearman_rho", "pearson_r"):
                    ranking[name] = 0.0
                    if ranking is out.get("ranking") and isinstance(out.get("summary"), dict):
                        out["summary"][name] = 0.0
    config.setdefault("device", data.get("cost", {}).get("device_type", "cpu"))
    config.setdefault("deterministic", data.get("execution", {}).get("deterministic", False))
    config.setdefault("precision", "fp32")  # records before `precision` existed ran in fp32
    out["config"] = config
    return out
