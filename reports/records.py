"""Finished run records from a results store, flattened into tables the report is built from (no retraining).

One row per run in `runs_frame`, one row per (run, architecture of the shared ranking sample) in `points_frame`.
Records are read as `evaluators.record.RunRecord` (validated, older layouts migrated); a record that does not load
is skipped with a warning naming its file, never half-read.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluators.ranking import correlation, kendall_tau, pearson_r
from evaluators.record import PHASES, RecordError, RunRecord

from .paper_settings import run_settings

log = logging.getLogger("oneshot_bench.reports")


def load_records(results_dir: str | Path) -> list[RunRecord]:
    """Every finished record under `results_dir` (runs/<run_id>/record.json), sorted by (space, data, budget,
    method, seed); unreadable or malformed ones, and one in another run's folder, are skipped with a warning that
    names the file."""
    records = []
    for path in sorted(Path(results_dir).glob("runs/*/record.json")):
        try:
            record = RunRecord.load(path)
        except RecordError as e:
            log.warning("skipping %s", e)
            continue
        if record.run_id != path.parent.name:  # another run's record copied here: it would be counted twice
            log.warning("skipping %s: it holds run %s, not the run its folder names (copied from another run's "
                        "folder?)", path, record.run_id)
            continue
        records.append(record)
    return sorted(records, key=lambda r: (r.space, r.data, r.budget, r.method, r.seed, r.run_id))


def setting_parts(record: RunRecord, budget_changes: str = "") -> tuple[str, str, str, str]:
    """What a comparison holds fixed (space, data, budget, ground truth): methods are only compared, and seeds only
    grouped, within one setting. `budget_changes` names overrides that set a budget apart from others of its name."""
    truth = record.config.get("truth", {}).get("name", record.hashes.truth.get("name", "?"))
    budget = f"budget={record.budget}" + (f" [{budget_changes}]" if budget_changes else "")
    return space_of(record), record.data, budget, f"truth={truth}"


def record_space_params(record: RunRecord) -> dict:
    """The space parameters the run set (`{}` for the space's defaults)."""
    return dict(record.config.get("space", {}).get("params") or {})


def space_of(record: RunRecord) -> str:
    """The space with its non-default parameters (`darts_cell[nodes=3]` is another space: another sample)."""
    params = record_space_params(record)
    return record.space + (f"[{', '.join(f'{k}={v}' for k, v in sorted(params.items()))}]" if params else "")


def budget_key(record: RunRecord) -> str:
    return json.dumps(record.config.get("budget", {}), sort_keys=True, default=str)


def settings_of(records: list[RunRecord]) -> dict[str, str]:
    """Each run's setting in words (by run id); see `settings_parts_of`."""
    return {run_id: " / ".join(parts) for run_id, parts in settings_parts_of(records).items()}


def settings_parts_of(records: list[RunRecord]) -> dict[str, tuple[str, str, str, str]]:
    """Each run's setting (by run id). Runs whose budgets share a name but not their values (an override such as
    budget.search_epochs=6) are set apart: the keys where a budget differs from the name's most common one are
    written into its setting."""
    by_name: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in records:
        by_name.setdefault((r.space, r.data, r.budget), []).append(r)
    out = {}
    for group in by_name.values():
        keys = [budget_key(r) for r in group]
        common = json.loads(max(set(keys), key=keys.count))
        for r, key in zip(group, keys, strict=True):
            budget = json.loads(key)
            changes = ", ".join(f"{k}={budget[k]}" for k in sorted(set(budget) | set(common))
                                if budget.get(k) != common.get(k))
            out[r.run_id] = setting_parts(r, changes)
    return out


def top_half_correlations(proxy: list[float], truth: list[float]) -> dict[str, float]:
    """Pearson and Kendall on the truly better half of the ranking sample (GHN Table 4's "Top-50" of 100); a
    constant proxy there ranks nothing: 0.0, the evaluator's one policy."""
    proxy = np.asarray(proxy, dtype=float)
    truth = np.asarray(truth, dtype=float)
    top = np.argsort(-truth, kind="stable")[: len(truth) // 2]
    return {"pearson_top_half": correlation(pearson_r, proxy[top], truth[top]),
            "kendall_top_half": correlation(kendall_tau, proxy[top], truth[top])}


def budget_description(record: RunRecord) -> str:
    """The budget a number was measured under, in words (paper tables state it beside every measured cell)."""
    b = record.config.get("budget", {})
    f = record.found
    imgs = b.get("max_train_images") or "all"
    final = (f"final net C={f.net.get('channels', '?')} N={f.net.get('cells_per_stage', '?')}, accuracy "
             f"{f.final_source}")
    if f.final_source == "retrained":
        final += f" {b.get('final', {}).get('epochs', '?')} epochs"
    return (f"budget={record.budget}: {b.get('resolution', '?')} px, {imgs} train images, "
            f"{b.get('search_epochs', '?')} search epochs, {len(record.ranking.proxy)} ranked archs; {final}")


@cache
def _method_defaults(method: str) -> tuple[tuple[str, Any], ...]:
    """The method's hyperparameter defaults from its installed Hparams dataclass (the one source of them); empty
    for a method this installation does not register. Names resolve through the registry, never as paths."""
    from methods import METHODS

    if method not in METHODS.names():
        return ()
    hp = METHODS.get(method).Hparams
    defaults = []
    for f in dataclasses.fields(hp):
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        defaults.append((f.name, str(value) if hasattr(value, "value") else value))  # choices by their name
    return tuple(defaults)


def variant_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a run that differ from the method's defaults: what tells an ablation run apart from
    the default one. Empty for a default run, or for a method this installation does not register."""
    defaults = dict(_method_defaults(method))
    return {k: v for k, v in sorted(params.items()) if k in defaults and defaults[k] != v}


def run_protocol(record: RunRecord) -> dict[str, Any]:
    """The selection protocol a run followed, with every setting resolved (what a paper row's protocol is matched
    against): selection name, k, candidates (the budget's when unset), final_seeds, final_channels and final_cells
    (of the network its finalists were trained or looked up at), cutout, drop_path, auxiliary_weight, and the search's
    arithmetic (precision: fp32, or bf16 autocast)."""
    sel = dict(record.found.selection)
    budget = record.config.get("budget", {})
    return {"selection": sel.get("name", "top1"), "k": sel.get("k", 10),
            "candidates": sel.get("candidates") or budget.get("candidates"),
            "short_epochs": sel.get("short_epochs") or budget.get("standalone", {}).get("epochs"),
            "final_seeds": sel.get("final_seeds", 1), "final_channels": record.found.net.get("channels"),
            "final_cells": record.found.net.get("cells_per_stage"), "cutout": sel.get("cutout", 0),
            "drop_path": sel.get("drop_path", 0.0), "auxiliary_weight": sel.get("auxiliary_weight", 0.0),
            "precision": record.config.get("precision", "fp32")}


def variant_label(record: RunRecord) -> str:
    """The method's name, followed by its non-default hyperparameters and a selection protocol other than top1
    (`ghn (stacked=True)`, `oneshot [topk k=2 F=32]`); `random` scored against trained truth is marked as the
    reproducibility ceiling it is (its proxy is the truth's own kind of training)."""
    changed = variant_params(record.method, record.method_params)
    label = record.method + (f" ({', '.join(f'{k}={v}' for k, v in changed.items())})" if changed else "")
    protocol = run_protocol(record)
    if protocol["selection"] != "top1":
        label += f" [{protocol_text(protocol)}]"
    if protocol["precision"] != "fp32":
        label += f" ({protocol['precision']} autocast search)"
    if record.bn_mode is not None:  # how its supernet scored: a protocol of this harness, not of the method
        label += f" (BN: {record.bn_mode})"
    if record.method == "random" and record.hashes.truth.get("kind") == "trained":
        label += " (upper bound: same training as the truth)"
    adaptation = method_adaptation(record.method)
    if adaptation:
        label += f" ({adaptation})"
    return label


def method_adaptation(method: str) -> str | None:
    """The method's own statement that it runs here as an adaptation (`Method.adaptation`), if any."""
    from methods.base import METHODS

    if method not in METHODS.names():  # a record of a method this checkout no longer has
        return None
    return METHODS.get(method).adaptation


def protocol_text(protocol: dict[str, Any]) -> str:
    """`topk k=2 F=32`, `top_best 40 ranked, top 3, 2 seeds F=32 cutout 16`: a protocol in words."""
    name = protocol["selection"]
    parts = [name]
    if name == "topk":
        parts.append(f"k={protocol['k']}")
    elif name == "top_best":
        parts.append(f"{protocol['candidates']} ranked, top {protocol['k']}, {protocol['final_seeds']} seed(s)")
    if protocol.get("final_channels"):
        parts.append(f"F={protocol['final_channels']}")
    for key, short in (("cutout", "cutout"), ("drop_path", "drop-path"), ("auxiliary_weight", "aux")):
        if protocol.get(key):
            parts.append(f"{short} {protocol[key]}")
    return " ".join(parts)


def runs_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run with everything the per-method table, the figures and the paper tables need."""
    rows = []
    settings = settings_of(records)
    for r in records:
        s, rk, f, c = r.summary, r.ranking, r.found, r.cost
        params = r.method_params
        row = {
            "run_id": r.run_id, "method": r.method, "space": r.space, "data": r.data,
            "space_params": record_space_params(r),
            "budget": r.budget, "seed": r.seed, "setting": settings[r.run_id],
            "device": c.device, "device_type": c.device_type,
            "search_seconds": s.search_device_seconds, "search_gpu_days": s.search_gpu_days,
            "params": s.params, "params_m": s.params / 1e6, "flops": s.flops,
            "final_test_acc": s.final_test_acc, "final_source": f.final_source,
            "final_anytime_auc": s.final_anytime_auc,
            "baseline_anytime_auc": (f.anytime_baseline["anytime"]["anytime_auc"] if f.anytime_baseline
                                     else math.nan),
            "found_arch": f.arch, "n_ranked": len(rk.proxy), "bn_mode": r.bn_mode or "",
            "precision_at_top10pct": s.precision_at_top10pct, "precision_at_5": s.precision_at_5,
            "method_params": params, "budget_desc": budget_description(r), "variant": variant_label(r),
            "variant_params": variant_params(r.method, params), "protocol": run_protocol(r),
            "run_settings": run_settings(r), "plumbing_check": r.plumbing_check or "",
            "final_test_acc_std": f.final_test_acc_std, "final_test_acc_se": s.final_test_acc_se,
            "params_m_std": f.params_std / 1e6, "n_finalists": max(1, len(f.finalists)),
            "evaluation_seconds": r.cost.evaluation_device_seconds, "truth_kind": r.hashes.truth.get("kind", "?"),
            "truth": r.config.get("truth", {}).get("name", r.hashes.truth.get("name", "?")),
        }
        for name in ("kendall_tau", "spearman_rho", "pearson_r"):
            row[name] = getattr(rk, name)
            for end in ("ci_low", "ci_high"):
                row[f"{name}_{end}"] = getattr(rk, f"{name}_{end}")
        for phase in PHASES:
            row[f"{phase}_seconds"] = c.phases[phase].device_seconds if phase in c.phases else math.nan
        row["pearson_all"], row["kendall_all"] = rk.pearson_r, rk.kendall_tau
        row.update(top_half_correlations(rk.proxy, rk.truth))
        rows.append(row)
    return pd.DataFrame(rows)


def points_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per ranked architecture: the method's proxy score against the ground truth."""
    rows = []
    settings = settings_of(records)
    for r in records:
        run = {"run_id": r.run_id, "method": r.method, "variant": variant_label(r), "seed": r.seed,
               "setting": settings[r.run_id]}  # once per run, not per architecture
        rk = r.ranking
        rows += [{**run, "arch": arch, "proxy": p, "truth": t}
                 for arch, p, t in zip(rk.archs, rk.proxy, rk.truth, strict=True)]
    return pd.DataFrame(rows, columns=["run_id", "method", "variant", "seed", "setting", "arch", "proxy", "truth"])
