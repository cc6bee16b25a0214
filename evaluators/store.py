"""The results store: one directory per run under `results/runs/`, holding record.json (written atomically when the
run finishes) and checkpoint.pt (after every epoch, removed once the record exists)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import torch

from oneshot_bench.atomic import torch_save, write_json

from .record import RunRecord


def run_id_for(config: dict[str, Any]) -> str:
    """Readable and unique: space-method-data-budget-seed plus a hash of the whole resolved config."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return (f"{config['space']['name']}-{config['method']['name']}-{config['data']['name']}-"
            f"{config['budget']['name']}-s{config['seed']}-{digest}")


class ResultsStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def record_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "record.json"

    def checkpoint_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoint.pt"

    def has_record(self, run_id: str) -> bool:
        return self.record_path(run_id).is_file()

    def load_record(self, run_id: str) -> RunRecord:
        return RunRecord.load(self.record_path(run_id))

    def save_record(self, run_id: str, record: RunRecord) -> Path:
        path = self.record_path(run_id)
        record.save(path)
        self.checkpoint_path(run_id).unlink(missing_ok=True)
        return path

    def write_artifact(self, run_id: str, name: str, content: Any) -> Path:
        """A method's JSON artifact (e.g. a latency table), beside the record as <name>.json."""
        path = self.run_dir(run_id) / f"{name}.json"
        write_json(path, content)
        return path

    def save_checkpoint(self, run_id: str, state: dict[str, Any]) -> None:
        torch_save(self.checkpoint_path(run_id), state)

    def load_checkpoint(self, run_id: str) -> Optional[dict[str, Any]]:
        path = self.checkpoint_path(run_id)
        return torch.load(path, weights_only=False) if path.is_file() else None

    def records(self) -> Iterator[RunRecord]:
        """Every finished record (unfinished runs have no record.json and are skipped)."""
        for path in sorted(self.runs_dir.glob("*/record.json")):
            yield RunRecord.load(path)
