"""Transfers: a searched cell trained in another setting's network and evaluated there (the papers' ImageNet mobile
results). `python run.py +transfer=imagenet_mobile transfer.source=<run id> data.root=<imagenet>`.

The source is a finished search run under `execution.results_dir` (its found arch; the record's method, protocol,
search cost and config hash travel into the transfer's record) or an encoded arch of `space=`. The network is the
space's ImageNet network (darts_cell: DARTS' NetworkImageNet), as wide as `transfer.channels`, or, when that is null,
the widest even width whose multiply-adds at the training resolution stay under `transfer.madds_limit` (600M:
the mobile setting; the GHN paper "constrains the total number of FLOPs by choosing the initial number of
channels"). Multiply-adds are counted over convolutions and linear layers (torch's FlopCounterMode / 2), which
gives DARTS-V2 at C=48 529.9M where DARTS prints 574M; the limit is compared in DARTS' units (our count divided by
COUNTER_SCALE = 529.9/574), so DARTS' own cell gets DARTS' C=48. Training follows DARTS' train_imagenet.py: plain
SGD with momentum (no Nesterov), the learning rate decayed by `lr_decay` after every epoch, label smoothing on the
main and auxiliary losses, auxiliary head weight 0.4, gradient clipping. Evaluation: top-1 and, with more than 5
classes, top-5 accuracy on val/.

Each transfer has an id (the source arch and record, the transfer setting with its resolved width, the data's
listing hash, seed, DataLoader workers (each worker draws its own augmentations) and device type) and lives in
`<results_dir>/transfers/<id>/`: record.json (written atomically at the end) and checkpoint.pt after every epoch
(loaded with weights_only=True), so an interrupted transfer resumes at its last finished epoch and an identical one
returns the record.
Departures from the official code: the global pooling is adaptive (the same as DARTS' 7x7 pool at 224 px); the
multiply-add count is calibrated on one cell (DARTS-V2), so another cell's count in DARTS' units is approximate.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from oneshot_bench.atomic import read_json, write_json
from oneshot_bench.config import Dataset, NetConfig, RunConfig, TransferConfig
from oneshot_bench.device import device_name, resolve_device, synchronize
from oneshot_bench.errors import ArchStringError, ConfigError, DataError
from oneshot_bench.imagenet import ImageFolderData, inspect_folder, loader, subset, transforms_for, worker_error
from oneshot_bench.measure import count_flops, count_params
from oneshot_bench.names import NAME_MAX, is_name
from oneshot_bench.training import EpochMeans, optimizer_step, topk_correct
from search_spaces.base import Arch, SearchSpace, get_space

from .cost import SECONDS_PER_DAY
from .environment import git_commit, versions
from .record import RecordError
from .store import ResultsStore, config_hash

log = logging.getLogger("oneshot_bench")
TRANSFER_RECORD_VERSION = 1
PAPER_SETTING = TransferConfig()  # the defaults are DARTS' ImageNet mobile protocol
TOP5_MIN_CLASSES = 6  # top-5 accuracy means something only with more than 5 classes
# what a transfer measures: the resolved width stands for `madds_limit`, which only chooses it
SETTING_KEYS = ("channels", "cells_per_stage", "resolution", "epochs", "batch_size", "lr", "lr_decay", "momentum",
                "weight_decay", "grad_clip", "label_smoothing", "auxiliary_weight", "drop_path", "max_train_images",
                "max_val_images")
# our multiply-add count of DARTS-V2 at C=48, 14 cells, 224 px, 1000 classes, over DARTS' printed 574M: limits
# are given in the papers' units and compared after this scaling (tests/test_transfer.py checks the count)
DARTS_V2_MADDS = 529_911_552
COUNTER_SCALE = DARTS_V2_MADDS / 574e6


class TransferStore(ResultsStore):
    """`<results_dir>/transfers/<id>/`, with the search store's lock, checkpoint and write checks."""

    @property
    def runs_dir(self) -> Path:
        return self.root / "transfers"


@dataclass
class TransferRecord:
    record_version: int
    transfer_id: str
    config_hash: str
    finished_at: str
    space: str
    arch: str
    source: dict[str, Any]  # kind "run" (its run id, method, protocol, search cost, config hash) or "arch"
    setting: dict[str, Any]  # the TransferConfig values that shape the measurement (channels resolved)
    departures: list[str]  # settings that differ from the paper's (DARTS') protocol; empty: the protocol itself
    data: dict[str, Any]  # name, listing sha256, classes, images available and used
    network: dict[str, Any]  # params (without the auxiliary head, as papers count), params_with_auxiliary, madds
    top1: float
    top5: Optional[float]  # None with 5 classes or fewer
    top1_se: float  # binomial standard error of top1, in points
    history: list[dict[str, Any]]  # one row per epoch: lr, train loss, seconds
    cost: dict[str, Any]  # device, device_type, train/eval device-seconds and device-days
    seed: int
    deterministic: bool
    versions: dict[str, str]
    git_commit: str

    @property
    def plumbing_check(self) -> Optional[str]:
        """Why this transfer is not the paper's measurement, in words; None when it ran the paper's protocol."""
        return ", ".join(self.departures) or None

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> TransferRecord:
        try:
            data = read_json(Path(path))
        except (OSError, ValueError) as e:
            raise RecordError(f"{path}: not a readable transfer record ({e})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or data.get("record_version") != TRANSFER_RECORD_VERSION:
            raise RecordError(f"{path}: not a transfer record of version {TRANSFER_RECORD_VERSION}")
        if set(data) != names:
            raise RecordError(f"{path}: transfer record fields differ: missing {sorted(names - set(data))}, "
                              f"unknown {sorted(set(data) - names)}")
        return cls(**data)


def load_transfer_records(results_dir: str | Path) -> list[TransferRecord]:
    """Every finished transfer under `results_dir` (unfinished ones have no record.json); unreadable ones are
    skipped with a warning naming the file."""
    records = []
    for path in sorted(TransferStore(results_dir).runs_dir.glob("*/record.json")):
        try:
            records.append(TransferRecord.load(path))
        except RecordError as e:
            log.warning("skipping %s", e)
    return records


# ---- plan: everything before any image is decoded ---------------------------------------------------------------

@dataclass
class TransferPlan:
    cfg: RunConfig
    setting: TransferConfig  # channels resolved
    space: SearchSpace
    arch: Arch
    source: dict[str, Any]
    data: ImageFolderData
    device: torch.device
    net: NetConfig
    madds: int
    store: TransferStore
    transfer_id: str
    config_hash: str
    departures: list[str] = field(default_factory=list)


def resolve_source(cfg: RunConfig) -> tuple[SearchSpace, Arch, dict[str, Any]]:
    """(space, arch, what the record says of the source): a run id under execution.results_dir, else an encoded
    arch of `space=`."""
    text = cfg.transfer.source if cfg.transfer else None
    if not text:
        raise ConfigError("transfer.source is not set: give a finished search run's id (a folder under "
                          f"{cfg.execution.results_dir}/runs/) or an encoded arch, e.g. transfer.source=<run id>.")
    store = ResultsStore(cfg.execution.results_dir)
    if looks_like_run_id(text) and store.has_record(text):
        try:
            record = store.load_record(text)
        except RecordError as e:
            raise ConfigError(f"transfer.source={text!r}: {e}") from None
        space = get_space(record.space, record.config.get("space", {}).get("params"))
        return space, space.decode(record.found.arch), {
            "kind": "run", "run_id": record.run_id, "config_hash": config_hash(record.config), "method": record.method,
            "method_params": record.method_params, "data": record.data, "budget": record.budget,
            "seed": record.seed, "selection": record.found.selection, "precision": record.config.get("precision",
                                                                                                  "fp32"),
            "search_device_seconds": record.cost.search_device_seconds, "search_gpu_days": record.cost.search_gpu_days,
            "device": record.cost.device, "device_type": record.cost.device_type,
            "plumbing_check": record.plumbing_check}
    space = get_space(cfg.space.name, cfg.space.params)
    try:
        arch = space.decode(text)
    except ArchStringError as e:
        raise ConfigError(f"transfer.source={text!r} is neither a finished run under {store.runs_dir} nor an arch "
                          f"of space {space.name!r} ({e})") from None
    return space, arch, {"kind": "arch"}


def looks_like_run_id(text: str) -> bool:
    """A run id is a folder name made of plain names (oneshot_bench.names): no path or arch-string separators,
    nothing hidden, no '..', short enough for the file system."""
    return is_name(text, max_length=NAME_MAX)


def transfer_net(space: SearchSpace, arch: Arch, net: NetConfig) -> nn.Module:
    return space.build_imagenet(arch, net)


def madds_of(space: SearchSpace, arch: Arch, net: NetConfig, resolution: int) -> int:
    """Multiply-adds of one image through the network (FlopCounterMode FLOPs / 2; no auxiliary head: it only
    trains)."""
    return count_flops(transfer_net(space, arch, net), net.in_channels, resolution) // 2


def widest_under(space: SearchSpace, arch: Arch, base: NetConfig, resolution: int, limit: float) -> tuple[int, int]:
    """(the largest even width C whose network stays under `limit` multiply-adds as DARTS counts them, its
    multiply-adds as counted here). For even C the count is exactly quadratic in C (every conv's channels are
    multiples of C/2), so three counts fix it; the answer is then counted once more to confirm."""
    scaled = limit * COUNTER_SCALE
    widths = (8, 16, 24)
    counts = [madds_of(space, arch, dataclasses.replace(base, channels=c), resolution) for c in widths]
    powers = torch.tensor([[w * w, w, 1.0] for w in widths], dtype=torch.float64)
    a, b, c0 = (float(v) for v in torch.linalg.solve(powers, torch.tensor(counts, dtype=torch.float64)))
    best = 2
    for width in range(2, 4097, 2):
        if a * width * width + b * width + c0 > scaled:
            break
        best = width
    madds = madds_of(space, arch, dataclasses.replace(base, channels=best), resolution)
    if madds > scaled:  # never, for an exact quadratic; guards a space whose count is not one
        raise ConfigError(f"could not size the network under transfer.madds_limit={limit:.0f}; set transfer.channels.")
    return best, madds


def departures_from_paper(setting: TransferConfig, paper_channels: Optional[int], source: dict[str, Any]) -> list[str]:
    """The settings in which a transfer differs from DARTS' ImageNet mobile protocol, in words (and a source run
    that was itself a plumbing check). `paper_channels`: the width the paper's rule gives this cell (None when
    the resolution is not the paper's, where the rule does not apply)."""
    out = [f"source run is a plumbing check ({source['plumbing_check']})"] if source.get("plumbing_check") else []
    for key in SETTING_KEYS:
        if key == "channels":
            if setting.channels != paper_channels:
                out.append(f"channels={setting.channels} (paper: {paper_channels or 'the widest under 600M'})")
            continue
        value, paper = getattr(setting, key), getattr(PAPER_SETTING, key)
        if value != paper:
            out.append(f"{key}={value} (paper: {'all' if paper is None else paper})")
    return out


def plan_transfer(cfg: RunConfig) -> TransferPlan:
    """Validate everything (source, space, data folder, width under the limit, results folder) before any image is
    decoded or any step trained."""
    assert cfg.transfer is not None
    if cfg.data.name != Dataset.imagenet:
        raise ConfigError(f"data={cfg.data.name} is not allowed with +transfer=imagenet_mobile: the setting trains on "
                          f"ImageNet (data=imagenet, data.root=<folder with train/ and val/>).")
    space, arch, source = resolve_source(cfg)
    data = inspect_folder(cfg.data)
    base = NetConfig(channels=cfg.transfer.channels or 8, cells_per_stage=cfg.transfer.cells_per_stage,
                     num_classes=data.num_classes, in_channels=3)
    t = cfg.transfer
    if t.channels is None:
        assert t.madds_limit is not None
        channels, madds = widest_under(space, arch, base, t.resolution, t.madds_limit)
    else:
        channels, madds = t.channels, madds_of(space, arch, base, t.resolution)
        if t.madds_limit is not None and madds > t.madds_limit * COUNTER_SCALE:
            raise ConfigError(f"transfer.channels={t.channels} gives {madds / COUNTER_SCALE / 1e6:.1f}M multiply-adds "
                              f"(as DARTS counts them) at {t.resolution} px, over transfer.madds_limit="
                              f"{t.madds_limit / 1e6:.0f}M; lower it, or leave it null for the widest width under the "
                              f"limit.")
    paper_channels = None  # the paper's rule (the widest under 600M at 224 px) applies at the paper's resolution
    if t.resolution == PAPER_SETTING.resolution and t.cells_per_stage == PAPER_SETTING.cells_per_stage:
        paper_channels = (channels if t.channels is None and t.madds_limit == PAPER_SETTING.madds_limit
                          else widest_under(space, arch, base, t.resolution, PAPER_SETTING.madds_limit)[0])
    setting = dataclasses.replace(t, channels=channels)
    net = dataclasses.replace(base, channels=channels)
    device = resolve_device(cfg.device)
    identity = {"space": space.name, "arch": space.encode(arch),
                "source": {k: source.get(k) for k in ("kind", "run_id", "config_hash")},
                "setting": {k: getattr(setting, k) for k in SETTING_KEYS},
                "data": {"name": str(cfg.data.name), "sha256": data.sha256}, "seed": cfg.seed,
                "workers": t.workers, "deterministic": cfg.deterministic, "device": device.type}
    digest = config_hash(identity)
    transfer_id = f"{space.name}-{source.get('method', 'arch')}-{cfg.data.name}-s{cfg.seed}-{digest[:10]}"
    store = TransferStore(cfg.execution.results_dir)
    weights = count_params(transfer_net(space, arch, net))
    store.check_writable(transfer_id, 4 * 3 * weights * 2)  # weights + two optimizer moments, old and new file
    return TransferPlan(cfg, setting, space, arch, source, data, device, net, madds, store, transfer_id, digest,
                        departures_from_paper(setting, paper_channels, source))


# ---- train and evaluate -----------------------------------------------------------------------------------------

def build_network(plan: TransferPlan) -> nn.Module:
    torch.manual_seed(plan.cfg.seed)
    net = transfer_net(plan.space, plan.arch, plan.net)
    if plan.setting.auxiliary_weight > 0:
        net.enable_auxiliary()
    return net.to(plan.device).to(memory_format=torch.channels_last)


def _batches(plan: TransferPlan, split: str, epoch: int):
    """(loader, images) of a split: training batches shuffled by (seed, epoch), evaluation in file order."""
    t = plan.setting
    train_tf, eval_tf = transforms_for(t.resolution)
    limit = t.max_train_images if split == "train" else t.max_val_images
    samples = subset(plan.data.images[split], limit, plan.cfg.seed)
    return loader(samples, train_tf if split == "train" else eval_tf, t.batch_size, t.workers,
                  shuffle=split == "train", seed=plan.cfg.seed * 100_003 + epoch,
                  pin_memory=plan.device.type == "cuda"), len(samples)


def _stream(batches, device: torch.device):
    """Batches on the device; a DataError raised in a worker comes out as its own message."""
    iterator = iter(batches)
    while True:
        try:
            x, y = next(iterator)
        except StopIteration:
            return
        except DataError as e:
            raise (worker_error(e) or e) from None
        yield (x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last),
               y.to(device, non_blocking=True))


def train_epoch(plan: TransferPlan, net: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> dict[str, float]:
    t = plan.setting
    lr = t.lr * t.lr_decay ** epoch  # DARTS: StepLR(step 1, gamma 0.97), stepped before each epoch
    for group in optimizer.param_groups:
        group["lr"] = lr
    net.train()
    net.drop_path_prob = t.drop_path * epoch / t.epochs
    torch.manual_seed(plan.cfg.seed * 100_003 + epoch)  # drop-path draws: a resumed epoch repeats them
    means = EpochMeans()
    where = f"transfer training (epoch {epoch + 1})"
    batches, _ = _batches(plan, "train", epoch)
    for x, y in _stream(batches, plan.device):
        loss = F.cross_entropy(net(x), y, label_smoothing=t.label_smoothing)
        if t.auxiliary_weight > 0:
            loss = loss + t.auxiliary_weight * F.cross_entropy(net.aux_logits, y, label_smoothing=t.label_smoothing)
        means.add("loss", optimizer_step(loss, optimizer, net, t.grad_clip), where=where)
    return {"lr": lr, "train_loss": means.means().get("loss", math.nan)}


@torch.no_grad()
def evaluate_network(plan: TransferPlan, net: nn.Module) -> tuple[float, Optional[float], int]:
    """(top-1 %, top-5 % or None with 5 classes or fewer, images) on val/."""
    net.eval()
    ks = (1, 5) if plan.data.num_classes >= TOP5_MIN_CLASSES else (1,)
    correct = torch.zeros(len(ks), dtype=torch.long, device=plan.device)
    batches, n = _batches(plan, "val", 0)
    for x, y in _stream(batches, plan.device):
        correct += topk_correct(net(x), y, ks)
    counts = correct.tolist()
    top5 = 100.0 * counts[1] / n if len(ks) > 1 else None
    return 100.0 * counts[0] / n, top5, n


def run_transfer(cfg: RunConfig) -> TransferRecord:
    from oneshot_bench.device import configure_torch

    plan = plan_transfer(cfg)
    store, tid = plan.store, plan.transfer_id
    with store.lock(tid):
        for leftover in store.clean_tmp(tid):
            log.info("removed %s, left half-written by a killed transfer", leftover)
        path = store.record_path(tid)
        if path.is_file() and not cfg.execution.force:
            try:
                return TransferRecord.load(path)
            except RecordError as e:
                raise ConfigError(f"{e}. Rerun with execution.force=true to compute the transfer again.") from None
        configure_torch(cfg.execution.threads, cfg.seed, cfg.deterministic)
        if plan.device.type == "cuda" and plan.device.index is not None:
            torch.cuda.set_device(plan.device)  # the DataLoader pins memory for the current device
        net = build_network(plan)
        t = plan.setting
        # DARTS' train_imagenet.py: plain momentum (training.sgd would add Nesterov)
        optimizer = torch.optim.SGD(net.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        history: list[dict[str, Any]] = []
        start_epoch = 0
        state = store.load_checkpoint(tid, plan.config_hash) if cfg.execution.resume else None
        if state is not None:
            net.load_state_dict(state["net"])
            optimizer.load_state_dict(state["optimizer"])
            history, start_epoch = list(state["history"]), int(state["epoch"])
            log.info("transfer %s resumes after epoch %d", tid, start_epoch)
        for epoch in range(start_epoch, t.epochs):
            synchronize(plan.device)
            began = time.perf_counter()
            row = train_epoch(plan, net, optimizer, epoch)
            synchronize(plan.device)
            history.append({"epoch": epoch + 1, **row, "seconds": time.perf_counter() - began})
            log.info("transfer epoch %d/%d: loss %.4f (lr %.4g)", epoch + 1, t.epochs, row["train_loss"], row["lr"])
            store.save_checkpoint(tid, plan.config_hash, {"epoch": epoch + 1, "net": net.state_dict(),
                                                          "optimizer": optimizer.state_dict(), "history": history})
        began = time.perf_counter()
        top1, top5, n_val = evaluate_network(plan, net)
        synchronize(plan.device)
        eval_seconds = time.perf_counter() - began
        record = build_transfer_record(plan, net, history, top1, top5, n_val, eval_seconds)
        record.save(path)
        store.checkpoint_path(tid).unlink(missing_ok=True)
    log.info("wrote %s", path)
    return record


def build_transfer_record(plan: TransferPlan, net: nn.Module, history: list[dict[str, Any]], top1: float,
                          top5: Optional[float], n_val: int, eval_seconds: float) -> TransferRecord:
    from datetime import datetime, timezone

    t = plan.setting
    with_aux = count_params(net)
    plain = with_aux - (count_params(net.auxiliary_head) if getattr(net, "auxiliary_head", None) is not None else 0)
    train_seconds = sum(h["seconds"] for h in history)
    n_train = len(subset(plan.data.images["train"], t.max_train_images, plan.cfg.seed))
    p = top1 / 100.0
    return TransferRecord(
        record_version=TRANSFER_RECORD_VERSION, transfer_id=plan.transfer_id, config_hash=plan.config_hash,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), space=plan.space.name,
        arch=plan.space.encode(plan.arch), source=plan.source,
        setting={k: getattr(t, k) for k in SETTING_KEYS} | {"workers": t.workers}, departures=plan.departures,
        data={"name": str(plan.cfg.data.name), "sha256": plan.data.sha256,
              "hash_of": "the file listing (relative paths and sizes), not the contents",
              "classes": plan.data.num_classes, "train_images": len(plan.data.images["train"]),
              "val_images": len(plan.data.images["val"]), "train_images_used": n_train, "val_images_used": n_val},
        network={"params": plain, "params_with_auxiliary": with_aux, "madds": plan.madds,
                 "madds_darts_units": plan.madds / COUNTER_SCALE,
                 "madds_counted_at": f"{t.resolution} px, convolutions and linear layers",
                 "channels": plan.net.channels, "cells": 3 * plan.net.cells_per_stage + 2},
        top1=top1, top5=top5, top1_se=100.0 * math.sqrt(p * (1 - p) / max(1, n_val)), history=history,
        cost={"device": device_name(plan.device), "device_type": plan.device.type,
              "train_device_seconds": train_seconds, "train_gpu_days": train_seconds / SECONDS_PER_DAY,
              "eval_device_seconds": eval_seconds},
        seed=plan.cfg.seed, deterministic=plan.cfg.deterministic, versions=versions(), git_commit=git_commit())


def summary_lines(record: TransferRecord) -> list[tuple[str, str]]:
    """(label, value) rows of the console summary."""
    src = record.source
    source = (f"run {src['run_id']} ({src['method']}, {src['budget']} budget, seed {src['seed']})"
              if src.get("kind") == "run" else "an arch given on the command line")
    rows = [("arch", record.arch), ("source", source),
            ("top-1 accuracy (%)", f"{record.top1:.2f} (SE {record.top1_se:.2f}; {record.data['val_images_used']:,} "
                                   f"val images, {record.data['classes']} classes)"),
            ("top-5 accuracy (%)", "—" if record.top5 is None else f"{record.top5:.2f}"),
            ("params", f"{record.network['params']:,} (+ auxiliary head: {record.network['params_with_auxiliary']:,})"),
            ("multiply-adds", f"{record.network['madds_darts_units'] / 1e6:.1f}M as DARTS counts them "
                              f"({record.network['madds'] / 1e6:.1f}M of {record.network['madds_counted_at']})"),
            ("network", f"C={record.network['channels']}, {record.network['cells']} cells"),
            ("training", f"{len(record.history)} epochs, {record.cost['train_device_seconds']:.1f} s on "
                         f"{record.cost['device']}"),
            ("protocol", "DARTS' ImageNet mobile protocol" if not record.departures
             else "NOT the paper's protocol: " + "; ".join(record.departures)),
            ("data", f"{record.data['name']} (listing sha256 {record.data['sha256'][:12]})"),
            ("record", record.transfer_id)]
    return rows

