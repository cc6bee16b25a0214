"""Typed configuration. Hydra's DictConfig becomes these dataclasses once, in `run.py`; core code takes plain values.

OmegaConf validates against the dataclasses, so a misspelt key or a wrong type fails at the edge with the key's name.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ConfigError


@dataclass
class NetConfig:
    """Size of a network built from a search space (supernet or standalone)."""

    channels: int = 16  # stem width C
    cells_per_stage: int = 5  # N (nb201 and darts_cell); mbnet_chain has a fixed depth and ignores it
    num_classes: int = 10  # filled from the data at run time
    in_channels: int = 3  # filled from the data at run time


@dataclass
class TrainConfig:
    """Standalone training of one architecture (random baseline proxy, darts_cell ground truth, final retraining)."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    max_train_images: Optional[int] = None  # cap the training images per epoch (None = all)


@dataclass
class BudgetConfig:
    """A budget profile (smoke / cpu / paper): how much every method may spend, identical for all methods."""

    name: str = "smoke"
    resolution: int = 8  # image side in pixels fed to every network
    max_train_images: Optional[int] = None  # cap on the search-train split (None = all)
    max_val_images: Optional[int] = None  # cap on the search-val split
    net: NetConfig = field(default_factory=NetConfig)  # supernet / hypernet target size during search
    net_by_space: dict[str, NetConfig] = field(default_factory=dict)  # per-space override of `net`
    search_epochs: int = 1
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    ranking_sample: int = 20  # size of the one fixed arch sample per (space, seed) that all methods score
    score_batches: int = 2  # val batches used to score one arch with shared/generated weights
    bn_recalibration_batches: int = 2  # train batches to re-estimate BN statistics before scoring an arch
    candidates: int = 20  # archs a method may score during its own search (random search, evolution...)
    evolution_generations: int = 2
    evolution_population: int = 10
    standalone: TrainConfig = field(default_factory=TrainConfig)  # random baseline + darts_cell ground truth
    final: TrainConfig = field(default_factory=TrainConfig)  # retraining of the found arch (no tabular truth)
    final_net: NetConfig = field(default_factory=NetConfig)
    final_net_by_space: dict[str, NetConfig] = field(default_factory=dict)  # per-space override of `final_net`
    bootstrap_resamples: int = 1000


@dataclass
class DataConfig:
    name: str = "digits"
    root: Optional[str] = None  # dataset folder; None falls back to the env var named in `root_env`
    root_env: str = "ONESHOT_CIFAR10_ROOT"
    download: bool = False  # allow torchvision to download when the root holds no data (needs internet)
    val_fraction: float = 0.5  # share of the training images held out as search-val (arch steps, ranking)
    augment: bool = True  # random crop with padding + horizontal flip, batched on the device


@dataclass
class SpaceConfig:
    name: str = "nb201"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    name: str = "spos"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    method: MethodConfig = field(default_factory=MethodConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    truth: str = "auto"  # auto | tabular | trained (standalone training under the budget, cached)
    truth_dataset: str = "cifar10"  # which NB201 column is ground truth: cifar10 | cifar100 | imagenet16-120
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None  # CPU threads for torch; None keeps torch's default (one per core)
    deterministic: bool = True  # torch's deterministic kernels: a run repeats bit for bit with the same seed/threads
    objective: str = "kendall_tau"  # value run.py returns to sweepers: any key of the record's "summary"
    results_dir: str = "results"
    cache_dir: Optional[str] = None  # standalone-training ground truth cache; None: <results_dir>/cache
    resume: bool = True  # continue from the run's last checkpoint when one exists
    force: bool = False  # recompute even when a finished record exists
    mode: str = "search"  # search (a benchmark run) | truth (only fill the ground-truth cache for the arch sample)
    #                       | report (rebuild the HTML report from the records under results_dir; nothing trains)
    report_dir: str = "reports/out"  # mode=report: folder of report.html
    truth_shard: str = "0/1"  # mode=truth: "i/n" trains every n-th sample arch from the i-th (n parallel workers)


def nets_for(budget: BudgetConfig, space: str) -> tuple[NetConfig, NetConfig]:
    """(search net, final net) of a budget for one space (papers size each space differently)."""
    return budget.net_by_space.get(space, budget.net), budget.final_net_by_space.get(space, budget.final_net)


def from_dictconfig(cfg: Any) -> RunConfig:
    """Validate a Hydra/OmegaConf config against RunConfig and return plain dataclasses."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
        run = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid configuration: {e}".replace("\n", " ")) from None
    assert isinstance(run, RunConfig)
    return run


def params_to_dataclass(cls: type, params: dict[str, Any], what: str) -> Any:
    """Build a method's or a space's hyperparameter dataclass, naming unknown keys and valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ConfigError(f"unknown {what} parameter(s) {unknown}. Valid: {sorted(names)}.")
    return cls(**params)


def to_plain(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
