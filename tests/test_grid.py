"""Grids of runs on a cluster engine: `python run.py -m hydra/launcher=submitit_local ...` runs each run as its own
submitit job (a real subprocess), and every job picks its own GPU from its index (oneshot_bench/device.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO


def test_a_grid_of_two_runs_through_submitit_local(tmp_path):
    from reports.build import build_report
    from reports.records import load_records

    results, sweep_dir = tmp_path / "results", tmp_path / "grid"
    cmd = [sys.executable, "run.py", "-m", "hydra/launcher=submitit_local", "method=random,zc", "space=mbnet_chain",
           "budget=smoke", "device=cpu", f"execution.results_dir={results}", f"hydra.sweep.dir={sweep_dir}"]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in done.stdout + done.stderr
    # each run ran as a submitit job of its own (a local job's id is its process id), with its own log, which ends
    # with its run's summary table
    jobs = sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 2
    logs = [(sweep_dir / ".submitit" / j / f"{j}_0_log.out").read_text() for j in jobs]
    records = load_records(results)
    assert sorted(r.method for r in records) == ["random", "zc"]
    assert sorted(next(i for i, text in enumerate(logs) if r.run_id in text) for r in records) == [0, 1]
    assert all(r.space == "mbnet_chain" and r.config["device"] == "cpu" for r in records)
    html = build_report(results, tmp_path / "report").read_text()
    for r in records:
        assert r.run_id in html


def test_every_run_of_a_grid_is_checked_before_any_job_starts(tmp_path, capsys):
    sys.path.insert(0, str(REPO))
    import run

    results = tmp_path / "results"
    for args, needles in [
        (["seed=0,-1"], ["seed=-1", "in the grid's run", "seed=-1"]),
        (["method=spos,proxylessnas", "space=darts_cell"], ["proxylessnas", "darts_cell", "in the grid's run"]),
    ]:
        code = run.cli(["-m", "hydra/launcher=submitit_local", f"execution.results_dir={results}",
                        f"hydra.sweep.dir={tmp_path / 'grid'}", *args])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert all(n in lines[0] for n in needles), lines[0]
        assert not (tmp_path / "grid").exists() and not results.exists()  # no job was launched


@pytest.mark.parametrize(("spec", "job", "visible", "hidden", "expected"), [
    ("auto", None, 2, False, "auto"),  # not in a multirun: unchanged
    ("cpu", 3, 2, False, "cpu"),
    ("cuda:1", 3, 2, False, "cuda:1"),  # an explicit GPU is kept
    ("auto", 0, 2, False, "cuda:0"),
    ("auto", 3, 2, False, "cuda:1"),  # local executor: every job sees both GPUs, job 3 takes the second
    ("cuda", 5, 1, False, "cuda:0"),  # SLURM: each job sees only its own GPU
    ("auto", 2, 0, False, "auto"),  # a CPU machine: auto runs on CPU
])
def test_each_job_takes_its_own_gpu(monkeypatch, spec, job, visible, hidden, expected):
    import torch

    from oneshot_bench import device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(device, "gpus_hidden_by_launcher", lambda: hidden)
    assert device.device_for_job(spec, job) == expected


def test_a_job_whose_launcher_hid_the_gpus_fails_clearly(monkeypatch, tmp_path):
    import torch

    from oneshot_bench import device
    from oneshot_bench.errors import ConfigError

    driver = tmp_path / "nvidia-version"
    driver.write_text("NVRM version: test")
    monkeypatch.setattr(device, "NVIDIA_DRIVER", driver)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what submitit_local sets without gpus_per_node
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="hydra.launcher.gpus_per_node"):
        device.device_for_job("auto", 0)  # not silently on CPU
    with pytest.raises(ConfigError, match="hydra.launcher.gpus_per_node"):
        device.resolve_device("cuda")
    assert device.device_for_job("cpu", 0) == "cpu"  # CPU on purpose is fine
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert not device.gpus_hidden_by_launcher()
