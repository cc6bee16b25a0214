"""Random search baseline: sample architectures, train each standalone from scratch under the budget, keep the best
by validation accuracy, or in a multi-exit space by the validation anytime AUC (Li & Talwalkar 2019 use it as the
reference every NAS method must beat)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from oneshot_bench.errors import ConfigError
from oneshot_bench.exits import ranking_value
from oneshot_bench.training import seeded, train_standalone
from search_spaces.base import ENCODE, SAMPLE, STANDALONE, Arch

from .base import Method, rank, register_method


@dataclass
class RandomHparams:
    epochs_per_arch: Optional[int] = None  # standalone epochs per candidate (None: the budget's standalone epochs)

    def __post_init__(self) -> None:
        if self.epochs_per_arch is not None and self.epochs_per_arch < 1:
            raise ConfigError(f"method.params.epochs_per_arch must be >= 1 or null, got {self.epochs_per_arch}.")


@register_method("random")
class RandomSearch(Method):
    Hparams = RandomHparams
    trains = False  # its standalone trainings happen in derive and scoring, not in search epochs
    required_capabilities = frozenset({SAMPLE, ENCODE, STANDALONE})

    def build(self) -> None:
        train = self.ctx.budget.standalone
        self.train_cfg = replace(train, epochs=self.hp.epochs_per_arch or train.epochs)
        # the own search's trainings are kept (progress) and charged to it; the shared sample's are evaluation
        # work (an arch in both trains twice, with the same seed: the same number, honestly charged)
        self.search_accuracy = self.cached("derive", self._train)

    def _train(self, arch: Arch) -> float:
        ctx, seed = self.ctx, self.arch_seed(arch, "standalone")
        net = seeded(lambda: ctx.space.build_standalone(arch, ctx.net), seed)
        result = train_standalone(net, ctx.data, self.train_cfg, ctx.device, seed, desc="random: train",
                                  eval_splits=("val",))
        return ranking_value(ctx.space, arch, ctx.net, ctx.data.resolution, result, "val")

    def score(self, archs: list[Arch]) -> list[float]:
        return [self._train(a) for a in archs]

    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """n distinct uniform archs ranked by validation accuracy after standalone training."""
        return rank(self.candidate_archs(n), self.search_accuracy, "random search")
