"""Committed result stores stay reusable: the current code finds every record under results/measured/ again.

A run is reused when the id its configuration gets today names the folder of a finished record, so each record's
id must recompute from its identity (`config`), and the identity this code builds from that configuration must be
the stored one, key for key: a new identity key stays out of the id while at its default, and no key is removed
(a removed method or budget key is refused as unknown before any identity is built).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf

import evaluators.runner as runner
from evaluators.store import run_id_for
from oneshot_bench.config import RunConfig, from_dictconfig

MEASURED = REPO / "results" / "measured"
# The store of the code before issue 13's method changes, made at that commit (results/measured/README): it is
# reused by a checkout of 9b8dff7 (benchmarks/method_fidelity.sh), never by this code, which it is compared with.
BEFORE, BEFORE_COMMIT = MEASURED / "method_fidelity" / "before", "9b8dff7"


def measured_records() -> list[tuple[Path, dict[str, Any]]]:
    paths = sorted(MEASURED.glob("**/runs/*/record.json"))
    if not paths:
        pytest.skip(f"no committed records under {MEASURED}")
    return [(path, json.loads(path.read_text())) for path in paths]


def run_config(identity: dict[str, Any]) -> RunConfig:
    """The RunConfig a command line would give for a stored identity: the data named without its location (its
    sha256 is the record's), the truth source by name, parameters and verification, and the scoring protocol
    (absent: the legacy one, `scoring.bn_mode=recalibrate_all`, which every record before scoring modes used; the
    default changed since, so those records are found again only with that override, never under the new default)."""
    data = {k: v for k, v in identity["data"].items() if k != "sha256"}
    truth = identity["truth"]
    config = {**identity, "data": data, "truth": {"name": truth["name"], "params": truth["params"],
                                                     "verify": truth["verified"]}}
    config["scoring"] = {"bn_mode": "recalibrate_all", **identity.get("scoring", {})}
    return from_dictconfig(OmegaConf.create(config))


def diff(built: Any, stored: Any, where: str = "config") -> list[str]:
    """Where two identities differ, key by key: what a new or removed identity key looks like."""
    if isinstance(built, dict) and isinstance(stored, dict):
        return [line for key in sorted(set(built) | set(stored), key=str)
                for line in diff(built.get(key, "<absent>"), stored.get(key, "<absent>"), f"{where}.{key}")]
    return [] if built == stored else [f"{where}: {built!r} now, {stored!r} stored"]


def test_every_committed_record_lies_in_the_folder_of_its_run_id():
    for path, record in measured_records():
        assert run_id_for(record["config"]) == record["run_id"] == path.parent.name, path


def test_the_current_code_builds_the_stored_identity_of_every_committed_record(monkeypatch):
    truths: dict[str, Any] = {}
    resolve_truth = runner.resolve_truth

    def cached_truth(space, name, params, verify):  # a table is read once, not once per record (nb301: 0.4 s)
        key = json.dumps([space.name, space.identity_params(), name, params, verify], sort_keys=True, default=str)
        if key not in truths:
            truths[key] = resolve_truth(space, name, params, verify=verify)
        return truths[key]

    monkeypatch.setattr(runner, "resolve_truth", cached_truth)
    monkeypatch.setattr(runner, "resolve_device", torch.device)  # a GPU run's record is planned on any machine
    checked = 0
    for path, record in measured_records():
        if path.is_relative_to(BEFORE):
            continue
        identity = record["config"]
        # the data as the record hashed it: the files are not needed, and not hashed again
        monkeypatch.setattr(runner, "data_sha256", lambda data, sha=identity["data"]["sha256"]: sha)
        plan = runner.plan_run(run_config(identity))
        assert diff(plan.identity, identity) == [], path
        assert plan.run_id == path.parent.name, path
        checked += 1
    assert checked > 0


def test_only_the_old_commits_records_are_left_out():
    """The store left out above holds that commit's records alone, so the exclusion hides nothing else."""
    commits = {record["git_commit"][:7] for path, record in measured_records() if path.is_relative_to(BEFORE)}
    assert commits <= {BEFORE_COMMIT}
