"""Standalone training under the budget: each arch trained from scratch on the run's data, cached on disk by
everything that affects the result (arch, data hash, resolution, network, training setup, seed), so every method
of a comparison reuses the same numbers. The truth of any space that builds standalone networks."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from typing import Any

from tqdm.auto import tqdm

from oneshot_bench.atomic import read_json, write_json
from oneshot_bench.config import TrainConfig
from oneshot_bench.training import seeded, train_standalone
from search_spaces.base import Arch

from ..store import move_aside
from .base import GroundTruth, register_truth

log = logging.getLogger("oneshot_bench")


@register_truth("trained")
class TrainedTruth(GroundTruth):
    kind = "trained"

    def _key(self, arch: Arch, train: TrainConfig) -> str:
        ctx = self.ctx
        spec = {"arch": self.space.encode(arch), "data": ctx.data.sha256, "res": ctx.data.resolution,
                "net": asdict(ctx.net), "train": asdict(train), "seed": ctx.seed, "space": self.space.name}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]

    def _train(self, arch: Arch, train: TrainConfig) -> dict[str, Any]:
        ctx = self.ctx
        path = ctx.cache_dir / self.space.name / f"{self._key(arch, train)}.json"
        if path.is_file():
            try:
                cached = read_json(path)
                if isinstance(cached, dict) and "test_acc" in cached and "val_acc" in cached:
                    return cached
            except (OSError, ValueError):
                pass
            log.warning("ground-truth cache file %s is unreadable; kept as %s and the arch is trained again", path,
                        move_aside(path).name)
        start = time.perf_counter()
        net = seeded(lambda: self.space.build_standalone(arch, ctx.net), ctx.seed)
        accs = train_standalone(net, ctx.data, train, ctx.device, ctx.seed, desc="ground truth")
        result = {"arch": self.space.encode(arch), **accs, "seconds": time.perf_counter() - start,
                  "train": asdict(train), "net": asdict(ctx.net)}
        write_json(path, result)
        return result

    def accuracies(self, archs: list[Arch]) -> list[float]:
        return [self._train(a, self.ctx.train)["test_acc"] for a in tqdm(archs, desc="ground truth", leave=False)]

    def final_accuracy(self, arch: Arch) -> dict[str, Any]:
        r = self._train(arch, self.ctx.final)
        return {"test_acc": r["test_acc"], "val_acc": r["val_acc"], "source": "retrained", "seconds": r["seconds"]}

    def describe(self) -> dict[str, Any]:
        ctx = self.ctx
        return {"name": self.name, "kind": self.kind,
                "metric": "test accuracy after standalone training under the budget",
                "train": asdict(ctx.train), "final": asdict(ctx.final), "net": asdict(ctx.net),
                "cache": str(ctx.cache_dir / self.space.name), "data_sha256": ctx.data.sha256}
