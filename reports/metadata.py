"""Provenance of the results a report shows: per-run device, commit, code fingerprint and data hashes; package
versions across runs. A report renders every finished record whatever code made it; the code column says which
(evaluators/fingerprint.py): this checkout's, other code (naming the files that differ), or a legacy record made
before fingerprints (its commit is then the only trace)."""
from __future__ import annotations

from dataclasses import dataclass

from evaluators.fingerprint import changed_on_disk, describe_changes, short, short_commit
from evaluators.record import RunRecord

from . import formatting as fmt


@dataclass
class RunMeta:
    run_id: str
    finished_at: str
    git_commit: str
    device: str
    data_sha256: str
    truth: str
    code: str  # which code made the record, against this checkout (code_label)


@dataclass
class VersionRow:
    package: str
    versions: list[str]

    @property
    def consistent(self) -> bool:
        return len(self.versions) <= 1


def run_metadata(records: list[RunRecord]) -> list[RunMeta]:
    out = []
    for r in records:
        truth = r.hashes.truth
        truth_text = str(truth.get("name", truth.get("kind", "?")))
        if truth.get("file"):
            truth_text += f": {truth['file']} (sha256 {fmt.short_hash(truth.get('sha256'))})"
        out.append(RunMeta(run_id=r.run_id, finished_at=r.finished_at, git_commit=r.git_commit, device=r.cost.device,
                           data_sha256=fmt.short_hash(r.hashes.data_sha256), truth=truth_text, code=code_label(r)))
    return out


def code_label(record: RunRecord) -> str:
    """The code that made a record, in words: this checkout's, or other code with the files that differ (read by
    path from its own file list), or a legacy record without a fingerprint, labelled by its commit."""
    if record.code is None:
        return f"legacy record (no code fingerprint), commit {short_commit(record.git_commit)}"
    changed = changed_on_disk(record.code.files)
    if not changed:
        return f"this checkout's (fingerprint {short(record.code.fingerprint)})"
    return (f"differs from this checkout: {describe_changes(changed, limit=3)} (fingerprint "
            f"{short(record.code.fingerprint)}, commit {short_commit(record.git_commit)})")


def version_table(records: list[RunRecord]) -> list[VersionRow]:
    """Each package with every version seen across the runs: more than one means the runs are not like for like."""
    seen: dict[str, set[str]] = {}
    for r in records:
        for package, version in r.versions.items():
            seen.setdefault(package, set()).add(str(version))
    return [VersionRow(package=p, versions=sorted(v)) for p, v in sorted(seen.items())]
