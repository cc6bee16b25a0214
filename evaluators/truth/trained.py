"""Standalone training under the budget: each arch trained from scratch on the run's data, cached on disk by
everything that affects the result (arch, data hash, resolution, network, training setup, seed), so every method
of a comparison reuses the same numbers. The truth of any space that builds standalone networks; a multi-exit
space's archs are ranked by their anytime AUC (`oneshot_bench.exits`), and their final results keep the curve."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from typing import Any, Optional

import numpy as np
from tqdm.auto import tqdm

from oneshot_bench.atomic import read_json, write_json
from oneshot_bench.config import NetConfig, TrainConfig, TrainingExtras
from oneshot_bench.device import full_precision
from oneshot_bench.exits import optional_curve, ranking_value
from oneshot_bench.training import NO_EXTRAS, seeded, train_standalone
from search_spaces.base import Arch

from ..state import parse_truth_entry
from ..store import move_aside
from .base import GroundTruth, register_truth

log = logging.getLogger("oneshot_bench")


@register_truth("trained")
class TrainedTruth(GroundTruth):
    kind = "trained"

    def _key(self, arch: Arch, train: TrainConfig, seed: int, extras: TrainingExtras, net: NetConfig) -> str:
        ctx = self.ctx
        spec = {"arch": self.space.encode(arch), "data": ctx.data.sha256, "res": ctx.data.resolution,
                "net": asdict(net), "train": asdict(train), "seed": seed, "space": self.space.name}
        if extras.active:  # (keys of trainings without extras stay what they were)
            spec["extras"] = asdict(extras)
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]

    def _train(self, arch: Arch, train: TrainConfig, seed: int = -1, extras: TrainingExtras = NO_EXTRAS,
               keep_correct: bool = False, net: Optional[NetConfig] = None) -> dict[str, Any]:
        ctx = self.ctx
        seed, net = ctx.seed if seed < 0 else seed, net or ctx.net
        path = ctx.cache_dir / self.space.name / f"{self._key(arch, train, seed, extras, net)}.json"
        if path.is_file():
            try:
                return parse_truth_entry(read_json(path), self.space.encode(arch), keep_correct=keep_correct,
                                         multi_exit=self.space.multi_exit).result()
            except (OSError, ValueError) as e:  # a cache: set aside and retrained (evaluators/store.py's policy)
                problem = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            log.warning("ground-truth cache file %s is unreadable or invalid (%s); kept as %s and the arch is trained "
                        "again", path, problem, move_aside(path).name)
        start = time.perf_counter()
        model = seeded(lambda: self.space.build_standalone(arch, net), seed)
        with full_precision(ctx.device):  # the truth is cached and shared: never the search's bf16, whoever asks
            accs = train_standalone(model, ctx.data, train, ctx.device, seed, extras=extras, desc="ground truth",
                                    keep_correct=keep_correct)
        result = {"arch": self.space.encode(arch), "val_acc": accs["val_acc"], "test_acc": accs["test_acc"],
                  "seconds": time.perf_counter() - start, "train": asdict(train), "net": asdict(net),
                  "seed": seed, "extras": asdict(extras), "n_images": len(ctx.data.test)}
        result.update({k: accs[k] for k in ("val_exit_acc", "test_exit_acc") if k in accs})
        if keep_correct:
            result["test_correct"] = np.packbits(accs["test_correct"]).tobytes().hex()
        write_json(path, result)
        return result

    def accuracies(self, archs: list[Arch]) -> list[float]:
        ctx = self.ctx
        return [ranking_value(self.space, a, ctx.net, ctx.data.resolution, self._train(a, ctx.train), "test")
                for a in tqdm(archs, desc="ground truth", leave=False)]

    def final_accuracy(self, arch: Arch, *, seed_index: int = 0, extras: TrainingExtras = NO_EXTRAS,
                       net: Optional[NetConfig] = None) -> dict[str, Any]:
        r = self._train(arch, self.ctx.final, seed=self.ctx.seed + 1000 * seed_index, extras=extras,
                        keep_correct=True, net=net)
        out = {"test_acc": r["test_acc"], "val_acc": r["val_acc"], "source": "retrained", "seconds": r["seconds"],
               "n_images": r["n_images"], "correct": r["test_correct"]}
        anytime = optional_curve(self.space, arch, net or self.ctx.net, self.ctx.data.resolution,
                                 r.get("test_exit_acc"))
        if anytime is not None:
            out["anytime"] = anytime
        return out

    def describe(self) -> dict[str, Any]:
        ctx = self.ctx
        return {"name": self.name, "kind": self.kind,
                "metric": ("anytime AUC (mean test accuracy over FLOPs budgets, oneshot_bench.exits) after "
                           "standalone training under the budget" if self.space.multi_exit else
                           "test accuracy after standalone training under the budget"),
                "train": asdict(ctx.train), "final": asdict(ctx.final), "net": asdict(ctx.net),
                "cache": str(ctx.cache_dir / self.space.name), "data_sha256": ctx.data.sha256}
