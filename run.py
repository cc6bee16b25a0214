"""oneshot-bench entry point: `python run.py method=spos space=nb201 data=digits budget=smoke seed=0 device=auto`.

Hydra composes conf/; the config becomes typed dataclasses here, once. `+sweep=<method>` runs a worker of an Optuna
study instead (evaluators/sweep.py); `-m ... hydra/launcher=submitit_slurm` (or submitit_local) sends a grid of runs
to a cluster, one job per run, with one GPU per job (oneshot_bench/device.py).
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from evaluators.cli import check_composes, check_overrides, grid_runs, override_args
from evaluators.hydra_config import register_configs
from evaluators.record import PHASES, RunRecord
from oneshot_bench.config import ExecutionConfig, Mode, from_dictconfig
from oneshot_bench.errors import ConfigError, UserError
from oneshot_bench.interrupts import INTERRUPTED_CODE

log = logging.getLogger("oneshot_bench")
CONF = Path(__file__).resolve().parent / "conf"
register_configs()


def print_summary(record: RunRecord) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from evaluators.ranking import degenerate_reason

    s, r, f = record.summary, record.ranking, record.found
    table = Table(title=f"{record.method} on {record.space} ({record.data}, budget={record.budget}, "
                        f"seed={record.seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if record.plumbing_check:
        table.title = f"{table.title}: PLUMBING CHECK, NOT A MEASUREMENT"
        table.title_style = "bold yellow"
        table.caption = (f"PLUMBING CHECK, NOT A MEASUREMENT: {record.plumbing_check}. It shows the code runs; "
                         f"its numbers say nothing about the method (use data=cifar10 budget=cpu or larger).")
        table.caption_style = "bold yellow"
    degenerate = degenerate_reason(r.proxy, r.truth)
    for name in ("kendall_tau", "spearman_rho", "pearson_r"):
        low, high = getattr(r, f"{name}_ci_low"), getattr(r, f"{name}_ci_high")
        # a degenerate ranking's 0.000 is the policy's value, not a measured "no better than chance": say so
        table.add_row(name, escape(f"{getattr(s, name):.3f}  " + (degenerate or f"[{low:.3f}, {high:.3f}]")),
                      style="bold yellow" if degenerate else None)
    if degenerate:
        cause = (f" (every arch scored {r.proxy[0]:.4g}: too few validation images or too little training; see "
                 f"data.val_fraction, budget.max_val_images, budget.score_batches)" if "proxy" in degenerate else "")
        table.add_row("ranking", escape(f"{degenerate}: the correlations are 0 by rule and rank nothing{cause}"),
                      style="bold yellow")
    best = r.best_reference()
    if best is not None:
        name, ref = best
        table.add_row("  best reference (no training)",
                      f"{name}: Kendall {ref.kendall_tau:.3f}  [{ref.kendall_tau_ci_low:.3f}, "
                      f"{ref.kendall_tau_ci_high:.3f}]")
        table.add_row("  other references", ", ".join(f"{n} {v.kendall_tau:.3f}" for n, v in r.references.items()
                                                      if n != name) or "-")
    if r.anytime:
        table.add_row("anytime Kendall (train s)", ", ".join(f"{p.kendall_tau:.2f} @ {p.train_seconds:.0f}s"
                                                             for p in r.anytime))
    table.add_row("precision@top10% / @5", f"{s.precision_at_top10pct:.2f} / {s.precision_at_5:.2f}")
    table.add_row("found arch", f.arch)
    sel = f.selection
    table.add_row("selection", sel["name"] + (f" (k={sel['k']})" if sel["name"] == "topk" else
                                              f" ({sel.get('candidates') or 'budget'} ranked, top {sel['k']} "
                                              f"short-trained, {sel['final_seeds']} final seed(s))"
                                              if sel["name"] == "top_best" else ""))
    spread = f" ± {f.final_test_acc_std:.2f} over {len(f.finalists)}" if len(f.finalists) > 1 else ""
    table.add_row("final accuracy (%)", f"{s.final_test_acc:.2f}{spread} (SE {f.final_test_acc_se:.2f}; "
                                        f"{f.final_source}, {f.final_n_images:,} images)")
    if f.finalists and f.finalists[0].anytime is not None:
        found_auc = ", ".join(f"{x.anytime['anytime_auc']:.2f}" for x in f.finalists if x.anytime)
        base = f.anytime_baseline
        table.add_row("final accuracy is", "the last classifier's (multi-exit arch)")
        table.add_row("anytime AUC (%)", f"found {found_auc} ({len(f.finalists[0].anytime['exit_acc'])} exits)"
                      + (f"; hand-designed baseline {base['arch']}: {base['anytime']['anytime_auc']:.2f} "
                         f"({len(base['anytime']['exit_acc'])} exits, same final training)" if base else ""))
    table.add_row("ground truth", f"{record.hashes.truth.get('name', '?')}: {record.hashes.truth.get('metric', '')}")
    table.add_row("params / FLOPs", f"{s.params:,} / {s.flops:,}")
    table.add_row("  counted at", f.sized_at or "?")
    for phase, v in sorted(record.cost.phases.items(), key=lambda kv: PHASES.index(kv[0]) if kv[0] in PHASES else 99):
        table.add_row(f"cost: {phase}", f"{v.device_seconds:.1f} s ({v.gpu_days:.2e} device-days)")
    table.add_row("search cost", f"{record.cost.search_device_seconds:.1f} s (training + own search + selection)")
    table.add_row("evaluation cost", f"{record.cost.evaluation_device_seconds:.1f} s (scoring the shared sample; "
                                     f"not search)")
    table.add_row("device", record.cost.device)
    table.add_row("record", record.run_id)
    Console().print(table)


def print_transfer_summary(record) -> None:
    from rich.console import Console
    from rich.table import Table

    from evaluators.transfer import summary_lines

    table = Table(title=f"transfer of a {record.space} arch to {record.data['name']} (seed {record.seed})")
    if record.departures:
        table.title = f"{table.title}: NOT THE PAPER'S PROTOCOL"
        table.title_style = "bold yellow"
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in summary_lines(record):
        table.add_row(label, value)
    Console().print(table)


@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")  # absolute: also when imported
def main(cfg: DictConfig) -> float:
    from evaluators.runner import precompute_truth, run_benchmark

    try:
        cfg = with_job_device(cfg)
        run_cfg = from_dictconfig(cfg)
        execution = run_cfg.execution
        if execution.mode == Mode.sweep:
            from evaluators.sweep import print_trials, run_sweep

            study = run_sweep(cfg, run_cfg, fixed=command_line_keys())
            assert run_cfg.sweep is not None
            print_trials(study, list(run_cfg.sweep.objectives))
            return 0.0
        if execution.mode == Mode.truth:
            done = precompute_truth(run_cfg)
            print(f"ground truth ready for {done['archs']} sample archs of {done['space']} "
                  f"({done['truth']['name']}, {done['seconds']:.0f} s, mean test acc {done['mean_test_acc']:.2f}%)")
            return done["mean_test_acc"]
        if execution.mode == Mode.transfer:
            from evaluators.transfer import run_transfer

            transfer = run_transfer(run_cfg)
            print_transfer_summary(transfer)
            return float(transfer.top1)
        if execution.mode == Mode.report:
            from reports.__main__ import main as report_main

            check_report_folders(execution)
            code = report_main(["--results", execution.results_dir, "--out", execution.report_dir])
            if code:
                sys.exit(code)
            return 0.0
        record = run_benchmark(run_cfg)
    except UserError as e:  # a message the user can act on, never a deep traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (OSError, MemoryError) as e:  # an OS limit (full disk, ulimit -f, permission...): named, with its fix
        exit_on_os_limit(e)
        raise
    print_summary(record)
    return float(record.summary.kendall_tau)


def command_line_keys() -> frozenset[str]:
    """The config keys this run's command line sets (key=value, +key=value, ++key=value)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return frozenset()
    return frozenset(arg.lstrip("+").split("=", 1)[0] for arg in HydraConfig.get().overrides.task
                     if "=" in arg and not arg.startswith("~"))


def with_job_device(cfg: DictConfig) -> DictConfig:
    """In a job of a multirun (`-m`, e.g. through submitit), pick this job's GPU from its index: submitit's local
    executor gives every job the same GPUs. Outside a multirun, or with device=cpu, the config is unchanged."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from oneshot_bench.device import device_for_job

    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    job_num = OmegaConf.select(hydra_cfg, "job.num", throw_on_missing=False) if hydra_cfg is not None else None
    job_num = job_num if isinstance(job_num, int) else None  # "???" outside a multirun
    device = device_for_job(str(cfg.device), job_num)
    if device == cfg.device:
        return cfg
    cfg = cfg.copy()
    OmegaConf.update(cfg, "device", device, merge=False)
    return cfg


def check_grid(overrides: list[str]) -> None:
    """Every run of a multirun, checked before any job is launched (a bad value in one job of a cluster grid would
    otherwise surface as that job's failure, after the others started): it composes, it is a valid configuration,
    and a benchmark run is a valid plan (method on space, truth, sample size, device)."""
    from evaluators.runner import plan_run

    runs = grid_runs(overrides)
    for args in runs:
        where = f" (in the grid's run {' '.join(args)})" if len(runs) > 1 else ""
        try:
            run_cfg = from_dictconfig(check_composes(args, CONF))
            if run_cfg.execution.mode == Mode.search:
                # the GPU is the job's, not this machine's (a cluster's login node has none): planned on CPU
                plan_run(dataclasses.replace(run_cfg, device="cpu"))
        except UserError as e:
            raise ConfigError(f"{e}{where}") from None


INTERRUPTED = "interrupted; resume with the same command"


def exit_on_os_limit(error: BaseException) -> None:
    """Exit 2 with one `error:` line when `error` is an OS limit the user can fix (os_errors); else return."""
    from oneshot_bench.os_errors import user_error

    mapped = user_error(error)
    if mapped is not None:
        print(f"error: {mapped}", file=sys.stderr)
        sys.exit(2)


def check_report_folders(execution: ExecutionConfig) -> None:
    """mode=report: the results folder exists and the report folder can take report.html, before any work."""
    from reports.__main__ import check_folders

    check_folders(execution.results_dir, execution.report_dir, "execution.results_dir", "execution.report_dir")


def cli(argv: list[str]) -> int:
    """`python run.py ARGS` as a function returning the exit code: 0, or 2 with one `error:` line for any bad
    input (checked before Hydra composes, so Hydra's own errors read the same), or 130 with one line after Ctrl-C.
    An interrupt leaves what SIGTERM leaves: the last checkpoint (written atomically, so never half a file), no
    record, and the same command resumes. Tests call it in-process."""
    try:
        try:
            overrides = override_args(argv)
            check_overrides(overrides, CONF)
            if {"-m", "--multirun"} & set(argv):
                check_grid(overrides)
            else:  # validated before Hydra, which makes its own folder under execution.results_dir
                run_cfg = from_dictconfig(check_composes(overrides, CONF))
                if run_cfg.execution.mode == Mode.report:  # (its results folder would then always exist)
                    check_report_folders(run_cfg.execution)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except (OSError, MemoryError) as error:
            exit_on_os_limit(error)
            raise
        sys.argv = [sys.argv[0], *argv]  # what Hydra's main reads
        main()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return INTERRUPTED_CODE
    return 0


if __name__ == "__main__":
    # a log line that cannot be written (a full disk under Hydra's log file) is dropped, not printed as a traceback:
    # the run's own write then fails with one `error:` line naming the file and the fix
    logging.raiseExceptions = False
    from oneshot_bench.interrupts import install_interrupt_once

    install_interrupt_once()
    sys.exit(cli(sys.argv[1:]))
