"""One benchmark run: the same phases, arch sample, metrics and cost accounting for every method.

Phases (each timed in device-seconds): supernet_train -> ranking (score the shared sample) -> derive (the
method's own search) -> final (accuracy of the derived arch: tabular lookup or retraining). Ground-truth work for
the ranking sample is timed separately and never charged to a method.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm.auto import tqdm

from methods.base import SearchContext, get_method
from oneshot_bench.atomic import write_json
from oneshot_bench.config import RunConfig, nets_for
from oneshot_bench.data import load_data
from oneshot_bench.device import configure_torch, resolve_device
from oneshot_bench.errors import ConfigError
from search_spaces.base import get_space

from .cost import CostMeter, count_flops, count_params
from .environment import git_commit, versions
from .ground_truth import ground_truth_for, table_quantile
from .ranking import ranking_metrics
from .sample import benchmark_sample
from .store import ResultsStore, run_id_for

log = logging.getLogger("oneshot_bench")
RECORD_VERSION = 1


def resolved_config(cfg: RunConfig, hparams: dict[str, Any]) -> dict[str, Any]:
    config = asdict(cfg)
    config["method"]["params"] = hparams  # with defaults filled in, so the run id changes when a default does
    # where and how a run executes does not change what it measures, so these stay out of the run id
    for k in ("results_dir", "cache_dir", "resume", "force", "device", "threads", "deterministic", "objective", "mode",
              "truth_shard", "report_dir"):
        config.pop(k)
    return config


def summarize(record: dict[str, Any]) -> dict[str, float]:
    """Headline numbers of a record, flat (what reports tabulate and sweeps optimize)."""
    r, f, c = record["ranking"], record["found"], record["cost"]
    out = {k: r[k] for k in ("kendall_tau", "spearman_rho", "pearson_r", "precision_at_top10pct", "precision_at_5")}
    out.update(final_test_acc=f["final_test_acc"], params=f["params"], flops=f["flops"],
               search_device_seconds=c["search_device_seconds"], search_gpu_days=c["search_gpu_days"])
    for phase, v in c["phases"].items():
        out[f"{phase}_seconds"] = v["device_seconds"]
    return out


def _data_nets_truth(cfg: RunConfig, space, device: torch.device, store: ResultsStore):
    """Data, (search net, final net) and the ground truth of a run: identical for every method, and for mode=truth."""
    configure_torch(cfg.threads, cfg.seed, cfg.deterministic)
    budget = cfg.budget
    data = load_data(cfg.data, resolution=budget.resolution, seed=cfg.seed, max_train_images=budget.max_train_images,
                     max_val_images=budget.max_val_images).to(device)
    fill = dict(num_classes=data.num_classes, in_channels=data.in_channels)
    search_net, final_net = nets_for(budget, space.name)
    net, final_net = replace(search_net, **fill), replace(final_net, **fill)
    truth_cache = Path(cfg.cache_dir or store.cache_dir) / "truth"
    truth = ground_truth_for(space, cfg.truth, cfg.truth_dataset, data=data, net=final_net, train=budget.standalone,
                             final=budget.final, device=device, seed=cfg.seed, cache_dir=truth_cache)
    return data, net, final_net, truth


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise ConfigError(f"truth_shard={text!r} is not of the form i/n with 0 <= i < n (e.g. truth_shard=1/2).")
    return index, count


def precompute_truth(cfg: RunConfig) -> dict[str, Any]:
    """mode=truth: fill the ground-truth cache for this shard of the shared arch sample, so that the methods' runs
    find it ready (n workers with truth_shard=i/n split it). A no-op for spaces with a tabular benchmark."""
    index, count = parse_shard(cfg.truth_shard)
    space = get_space(cfg.space.name, cfg.space.params)
    device = resolve_device(cfg.device)
    _, _, _, truth = _data_nets_truth(cfg, space, device, ResultsStore(cfg.results_dir))
    sample = benchmark_sample(space, cfg.seed, cfg.budget.ranking_sample)[index::count]
    start = time.perf_counter()
    accs = truth.accuracies(sample)
    return {"space": space.name, "truth": truth.describe(), "archs": len(sample),
            "seconds": time.perf_counter() - start, "mean_test_acc": sum(accs) / max(len(accs), 1)}


def run_benchmark(cfg: RunConfig, *, progress: Optional[bool] = None) -> dict[str, Any]:
    space = get_space(cfg.space.name, cfg.space.params)
    method = get_method(cfg.method.name, cfg.method.params)
    method.check_supports(space)  # fail before loading any data
    device = resolve_device(cfg.device)
    store = ResultsStore(cfg.results_dir)
    config = resolved_config(cfg, method.hparams_dict())
    run_id = run_id_for(config)
    if store.has_record(run_id) and not cfg.force:
        log.info("run %s already finished; returning its record (force=true recomputes)", run_id)
        return store.load_record(run_id)

    budget = cfg.budget
    data, net, final_net, truth = _data_nets_truth(cfg, space, device, store)
    meter = CostMeter(device)
    method.setup(SearchContext(space=space, data=data, budget=budget, device=device, seed=cfg.seed, net=net,
                               final_net=final_net))

    history: list[dict[str, float]] = []
    start_epoch = 0
    checkpoint = store.load_checkpoint(run_id) if cfg.resume and not cfg.force else None
    if checkpoint is not None:
        method.load_state_dict(checkpoint["method"])
        meter.seconds, history, start_epoch = checkpoint["seconds"], checkpoint["history"], checkpoint["epoch"] + 1
        torch.set_rng_state(checkpoint["torch_rng"])
        log.info("resuming run %s after epoch %d", run_id, checkpoint["epoch"])

    for epoch in tqdm(range(start_epoch, budget.search_epochs), desc=f"{method.name} search", disable=progress is False
                      or None, initial=start_epoch, total=budget.search_epochs):
        with meter.phase("supernet_train"):
            history.append({"epoch": epoch, **method.train_epoch(epoch)})
        store.save_checkpoint(run_id, {"method": method.state_dict(), "seconds": dict(meter.seconds),
                                       "history": history, "epoch": epoch, "torch_rng": torch.get_rng_state()})

    sample = benchmark_sample(space, cfg.seed, budget.ranking_sample)
    with meter.phase("ranking"):
        scores = [float(s) for s in method.score(sample)]
    truth_start = time.perf_counter()
    true_acc = truth.accuracies(sample)
    truth_seconds = time.perf_counter() - truth_start  # reference work, not charged to the method
    metrics = ranking_metrics(scores, true_acc, resamples=budget.bootstrap_resamples, seed=cfg.seed)
    extra = {name: {**ranking_metrics(values, true_acc, resamples=budget.bootstrap_resamples, seed=cfg.seed),
                    "proxy": [float(v) for v in values]}
             for name, values in method.extra_scores.items()}

    with meter.phase("derive"):
        best = method.derive()
    with meter.phase("final"):
        final = truth.final_accuracy(best)
    # a retrain served from the cache (another method found the same arch) still costs its original training time
    meter.seconds["final"] = max(meter.seconds["final"], final.get("seconds", 0.0))

    best_net = space.build_standalone(best, final_net)
    worst_decile = table_quantile(truth, 0.1)
    record = {
        "record_version": RECORD_VERSION,
        "run_id": run_id,
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "config": config,
        "method": method.name,
        "space": space.name,
        "data": data.name,
        "budget": budget.name,
        "seed": cfg.seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "execution": {"threads": torch.get_num_threads(), "deterministic": cfg.deterministic},
        "hashes": {"data_sha256": data.sha256, "truth": truth.describe()},
        "cost": meter.summary(),
        "truth_seconds": truth_seconds,
        "history": history,
        "ranking": {**metrics, "archs": [space.encode(a) for a in sample], "proxy": scores, "truth": true_acc,
                    "extra_proxies": extra},
        "found": {
            "arch": space.encode(best),
            "params": count_params(best_net),
            "flops": count_flops(best_net.to(device), data.in_channels, data.resolution),
            "net": asdict(final_net),
            "resolution": data.resolution,
            **{f"final_{k}": v for k, v in final.items()},
            "space_worst_decile_acc": worst_decile,
        },
    }
    artifacts = method.artifacts()
    for name, content in artifacts.items():
        write_json(store.run_dir(run_id) / f"{name}.json", content)
    record["artifacts"] = sorted(f"{name}.json" for name in artifacts)
    record["summary"] = summarize(record)
    path = store.save_record(run_id, record)
    log.info("wrote %s", path)
    return record
