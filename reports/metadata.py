"""Provenance of the results a report shows: per-run device, commit and data hashes; package versions across runs."""
from __future__ import annotations

from dataclasses import dataclass

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
                           data_sha256=fmt.short_hash(r.hashes.data_sha256), truth=truth_text))
    return out


def version_table(records: list[RunRecord]) -> list[VersionRow]:
    """Each package with every version seen across the runs: more than one means the runs are not like for like."""
    seen: dict[str, set[str]] = {}
    for r in records:
        for package, version in r.versions.items():
            seen.setdefault(package, set()).add(str(version))
    return [VersionRow(package=p, versions=sorted(v)) for p, v in sorted(seen.items())]
