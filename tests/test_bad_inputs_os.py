"""Interrupts and operating-system limits as exits (issue 29, "What to build" 4): Ctrl-C is one line and exit 130,
leaving what SIGTERM leaves (the last checkpoint, no record, no temporary file; the same command resumes to the
uninterrupted run's result); a full disk, a file-size limit, a missing permission, a path too long or a file far
larger than its format are one `error:` line naming the file and the fix, with the last checkpoint intact; every
integer and float that reaches torch is bounded before any work.

Disk full is fault-injected (os.write fails with ENOSPC part-way through a file, as a full disk does); `ulimit -f`
and the permission cases run `python run.py` in a subprocess (a shell's limit; setpriv drops root's permission
override), as does one real SIGINT. The rest run in-process through run.cli.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, SETPRIV, assert_clear_error, cifar_copy

sys.path.insert(0, str(REPO))
import run  # noqa: E402 - the entry point

CASES = [  # (case as the issue names it, expected class, test)
    ("Ctrl-C prints a 45-line KeyboardInterrupt traceback during training", "handled",
     "test_ctrl_c_during_training_is_one_line_and_the_same_command_resumes_to_the_same_record"),
    ("Ctrl-C during training (a real SIGINT to `python run.py`)", "handled",
     "test_a_real_sigint_is_one_line_exit_130_and_leaves_only_the_last_checkpoint"),
    ("Disk full mid-run (ENOSPC) gives a traceback; the last checkpoint survives", "clear error",
     "test_a_full_disk_mid_run_is_one_error_and_the_last_checkpoint_resumes"),
    ("`ulimit -f` (EFBIG) gives a traceback; the last checkpoint survives", "clear error",
     "test_a_file_size_limit_is_one_error_and_the_last_checkpoint_stays"),
    ("Unreadable CIFAR batches (chmod 000, as a non-root user) give a PermissionError traceback", "clear error",
     "test_an_unreadable_cifar_batch_is_one_error"),
    ("Unreadable truth CSV (chmod 000, as a non-root user) gives a PermissionError traceback", "clear error",
     "test_an_unreadable_truth_table_is_one_error"),
    ("An 8 GB file in place of a CIFAR batch gives a MemoryError after 31 s of hashing", "clear error",
     "test_a_huge_file_in_place_of_a_cifar_batch_is_refused_by_its_size"),
    ("`data.root` of 5,000 characters gives an OSError traceback", "clear error",
     "test_a_data_root_too_long_for_the_file_system_is_one_error"),
    ("`seed=99999999999999999999999` passes validation, then overflows in torch.manual_seed", "clear error",
     "test_a_seed_beyond_what_seeding_accepts_is_refused_before_any_folder"),
    ("`budget.resolution=2048` tries to allocate 4 GiB: resolution has no upper bound", "clear error",
     "test_a_resolution_beyond_512_is_refused"),
    ("`budget.net.channels=100000` asks for 352,478,659 MiB of free disk", "clear error",
     "test_a_network_too_large_for_memory_names_its_width"),
    ("`weight_decay=inf` passes validation; the divergence message then blames lr and grad_clip", "clear error",
     "test_a_non_finite_float_is_refused"),
]

SMALL = ("method=spos", "space=mbnet_chain")  # the smoke budget: two epochs, two checkpoints, a few seconds


def run_dirs(results: Path) -> list[Path]:
    return sorted((results / "runs").iterdir()) if (results / "runs").is_dir() else []


def leftovers(results: Path) -> list[Path]:
    return sorted(results.rglob(".*.tmp"))


def checkpoint_epoch(path: Path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu")["epoch"]


def same_result(a: dict, b: dict) -> None:
    """Two records of one run measure the same thing: history (losses), ranking, found arch, final accuracy."""
    strip = lambda h: [{k: v for k, v in e.items() if "second" not in k} for e in h]  # noqa: E731 - times differ
    assert strip(a["history"]) == strip(b["history"])
    for key in ("proxy", "truth", "kendall_tau"):
        assert a["ranking"][key] == b["ranking"][key], key
    assert a["found"]["arch"] == b["found"]["arch"]
    assert a["summary"]["final_test_acc"] == b["summary"]["final_test_acc"]


def record_of(results: Path) -> dict:
    (path,) = results.glob("runs/*/record.json")
    return json.loads(path.read_text())


# ---- Ctrl-C --------------------------------------------------------------------------------------------------------
def ctrl_c_in_epoch_1(monkeypatch) -> None:
    """Ctrl-C while SPOS trains its second epoch (its first checkpoint written); undone by monkeypatch.undo()."""
    from methods.spos import SPOS

    original = SPOS.train_epoch

    def train_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(SPOS, "train_epoch", train_epoch)


def test_ctrl_c_during_training_is_one_line_and_the_same_command_resumes_to_the_same_record(run_cli, tmp_path,
                                                                                           monkeypatch):
    results = tmp_path / "results"
    ctrl_c_in_epoch_1(monkeypatch)
    code, _, err = run_cli(*SMALL)
    assert code == 130 and err.strip().splitlines()[-1] == run.INTERRUPTED, err
    assert "Traceback" not in err and "error:" not in err
    (run_dir,) = run_dirs(results)
    assert checkpoint_epoch(run_dir / "checkpoint.pt") == 0  # SIGTERM's state: the last checkpoint, nothing else
    assert not (run_dir / "record.json").exists() and not leftovers(results)

    monkeypatch.undo()
    code, _, err = run_cli(*SMALL)
    assert code == 0, err
    resumed = record_of(results)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    assert run_cli(*SMALL, results=results / "uninterrupted")[0] == 0
    same_result(resumed, record_of(results / "uninterrupted"))


def test_a_real_sigint_is_one_line_exit_130_and_leaves_only_the_last_checkpoint(confined, tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "method=spos", "space=mbnet_chain",
                             "budget.search_epochs=100000", f"execution.results_dir={results}",
                             "execution.threads=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(results.glob("runs/*/checkpoint.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.count(run.INTERRUPTED) == 1 and "Traceback" not in err, err
    (run_dir,) = run_dirs(results)
    assert checkpoint_epoch(run_dir / "checkpoint.pt") >= 0
    assert not (run_dir / "record.json").exists() and not leftovers(results)


# ---- a full disk, a file-size limit ----------------------------------------------------------------------------------
def disk_full_after(monkeypatch, name: str, saves: int) -> None:
    """os.write fails with ENOSPC part-way through the file `name` once `saves` copies of it were written: the
    first write of the doomed copy gets half its bytes onto the disk, the next fails (what a filling disk does)."""
    real, files = os.write, []

    def write(fd: int, data) -> int:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if not Path(target).name.startswith(f".{name}."):
            return real(fd, data)
        if target not in files:
            files.append(target)
            if len(files) > saves:
                return real(fd, bytes(data)[:max(1, len(data) // 2)])
        if len(files) > saves:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the fault injection reads /proc/self/fd (Linux)")
def test_a_full_disk_mid_run_is_one_error_and_the_last_checkpoint_resumes(run_cli, tmp_path, monkeypatch):
    results = tmp_path / "results"
    with monkeypatch.context() as patch:
        disk_full_after(patch, "checkpoint.pt", saves=1)  # epoch 0's checkpoint is written, epoch 1's is not
        result = run_cli(*SMALL)
    (run_dir,) = run_dirs(results)
    assert_clear_error(result, str(run_dir / "checkpoint.pt"), "the disk is full", "free space",
                       "execution.results_dir")
    assert checkpoint_epoch(run_dir / "checkpoint.pt") == 0  # intact: loads, and is the last one written
    assert not (run_dir / "record.json").exists() and not leftovers(results)
    code, _, err = run_cli(*SMALL)  # space freed: the same command resumes
    assert code == 0, err
    assert run_cli(*SMALL, results=results / "uninterrupted")[0] == 0
    same_result(record_of(results), record_of(results / "uninterrupted"))


def test_a_file_size_limit_is_one_error_and_the_last_checkpoint_stays(run_cli, tmp_path, monkeypatch):
    results = tmp_path / "results"
    ctrl_c_in_epoch_1(monkeypatch)
    assert run_cli(*SMALL)[0] == 130  # a checkpoint of epoch 0 to resume from
    monkeypatch.undo()
    (run_dir,) = run_dirs(results)
    checkpoint = run_dir / "checkpoint.pt"
    before = checkpoint.read_bytes()
    limit_kib = len(before) // 1024 // 2  # the next checkpoint cannot be written; the small files can
    assert limit_kib >= 16, len(before)
    command = " ".join([f"ulimit -f {limit_kib};", "exec", sys.executable, str(REPO / "run.py"), *SMALL,
                        f"execution.results_dir={results}", "execution.threads=1"])
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert_clear_error((proc.returncode, proc.stdout, proc.stderr), str(checkpoint), "ulimit -f",
                       "raise the limit", "rerun the same command")
    assert checkpoint.read_bytes() == before and not leftovers(results)
    assert not (run_dir / "record.json").exists()


def test_a_failed_write_leaves_the_previous_file_and_names_the_target(tmp_path, monkeypatch):
    from oneshot_bench.atomic import write_json
    from oneshot_bench.os_errors import user_error

    path = tmp_path / "record.json"
    write_json(path, {"ok": 1})
    disk_full_after(monkeypatch, "record.json", saves=0)
    with pytest.raises(OSError) as failed:
        write_json(path, {"new": list(range(10_000))})
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(path)
    assert json.loads(path.read_text()) == {"ok": 1} and [p.name for p in tmp_path.iterdir()] == ["record.json"]
    assert str(path) in str(user_error(failed.value))


# ---- unreadable and oversized inputs ---------------------------------------------------------------------------
def without_permission_override(code: str, *args: str) -> subprocess.CompletedProcess:
    """`python -c code args` as root without its file-permission override (what a normal user meets)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing: the permission cases need it to drop root's override")
    return subprocess.run([*SETPRIV, sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300)


CLI = f"import sys; sys.path.insert(0, {str(REPO)!r}); import run; sys.exit(run.cli(sys.argv[1:]))"


def test_an_unreadable_cifar_batch_is_one_error(confined, tmp_path):
    folder = cifar_copy(confined)
    (folder / "data_batch_3").chmod(0)
    proc = without_permission_override(CLI, "data=cifar10", f"data.root={folder.parent}",
                                       f"execution.results_dir={tmp_path / 'results'}", "execution.threads=1")
    assert_clear_error((proc.returncode, proc.stdout, proc.stderr), str(folder / "data_batch_3"),
                       "permission denied", "chmod", "data.root")
    assert not list((tmp_path / "results").glob("runs/*/*.pt"))


def test_an_unreadable_truth_table_is_one_error(confined, tmp_path):
    import evaluators.truth.base as base

    tables = confined / "truth-data"
    shutil.copytree(base.DATA_DIR, tables)
    csv = tables / "nb201_nats_tss_test200.csv"
    csv.chmod(0)
    code = (f"import sys; from pathlib import Path; sys.path.insert(0, {str(REPO)!r}); "
            "import evaluators.truth.base as b; b.DATA_DIR = Path(sys.argv[1]); "  # the copy, as the truth_dir fixture
            "import run; sys.exit(run.cli(sys.argv[2:]))")
    proc = without_permission_override(code, str(tables), "method=spos", "space=nb201",
                                       f"execution.results_dir={tmp_path / 'results'}", "execution.threads=1")
    assert_clear_error((proc.returncode, proc.stdout, proc.stderr), str(csv), "permission denied", "chmod")
    assert not list((tmp_path / "results").glob("runs/*/*.pt"))


def test_a_huge_file_in_place_of_a_cifar_batch_is_refused_by_its_size(run_cli, confined, tmp_path):
    folder = cifar_copy(confined)
    with open(folder / "data_batch_2", "wb") as f:
        f.truncate(8 * 2**30)  # sparse: 8 GB by its size, nothing on the disk
    start = time.perf_counter()
    assert_clear_error(run_cli("data=cifar10", f"data.root={folder.parent}"), str(folder / "data_batch_2"),
                       "8,589.9 MB", "CIFAR-10 python batch", "re-download")
    assert time.perf_counter() - start < 30  # refused by its size, not after hashing 8 GB
    assert not run_dirs(tmp_path / "results")


def test_a_data_root_too_long_for_the_file_system_is_one_error(run_cli, confined, tmp_path):
    root = str(confined / ("a" * (5000 - len(str(confined)) - 1)))
    assert len(root) == 5000
    line = assert_clear_error(run_cli("data=cifar10", f"data.root={root}"), "data.root=", "File name too long",
                              "point data.root at the folder")
    assert len(line) < 600  # the 5,000 characters are shortened
    assert not run_dirs(tmp_path / "results")


# ---- integers and floats that reach torch ------------------------------------------------------------------------
def test_a_seed_beyond_what_seeding_accepts_is_refused_before_any_folder(run_cli, tmp_path):
    assert_clear_error(run_cli("seed=99999999999999999999999"), "seed=99999999999999999999999", "2**32 - 1")
    assert not run_dirs(tmp_path / "results")


def test_the_largest_allowed_seed_runs(run_cli, tmp_path):
    from oneshot_bench.config import MAX_SEED

    code, _, err = run_cli("method=spos", "space=mbnet_chain", f"seed={MAX_SEED}")
    assert code == 0, err
    assert record_of(tmp_path / "results")["seed"] == MAX_SEED


@pytest.mark.parametrize("key", ["budget.resolution", "+transfer=imagenet_mobile transfer.resolution"])
def test_a_resolution_beyond_512_is_refused(run_cli, tmp_path, key):
    *extra, key = key.split()
    assert_clear_error(run_cli(*extra, f"{key}=2048"), f"{key}=2048", "at most 512 px")
    assert not run_dirs(tmp_path / "results")


@pytest.mark.parametrize("overrides", [
    ("budget.net.channels=100000",),
    ("budget=cpu", "space=darts_cell", "budget.net_by_space.darts_cell.channels=100000"),
    ("space=darts_cell", "budget.final_net.channels=100000"),
    ("space=darts_cell", "selection.final_channels=100000"),
], ids=["search net", "per-space search net", "final net", "selection final width"])
def test_a_network_too_large_for_memory_names_its_width(run_cli, tmp_path, overrides):
    key = overrides[-1].split("=")[0]
    start = time.perf_counter()
    line = assert_clear_error(run_cli(*overrides), f"{key}=100000", "GiB of memory", f"lower {key}")
    assert "MiB free" not in line  # not blamed on the disk
    assert time.perf_counter() - start < 60 and not list((tmp_path / "results").glob("runs/*/*.pt"))


@pytest.mark.parametrize("override", ["budget.weight_decay=inf", "budget.lr=nan", "budget.grad_clip=inf",
                                      "budget.anytime_share=inf", "budget.final.weight_decay=inf",
                                      "budget.standalone.momentum=nan", "selection.auxiliary_weight=inf",
                                      "method=darts method.params.arch_lr=inf"])
def test_a_non_finite_float_is_refused(run_cli, tmp_path, override):
    *extra, last = override.split()
    assert_clear_error(run_cli(*extra, last), f"{last.split('=')[0]}=", "finite number")
    assert not run_dirs(tmp_path / "results")


def test_a_non_finite_transfer_float_is_refused():
    from oneshot_bench.config import TransferConfig
    from oneshot_bench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"transfer.weight_decay=inf .*finite number"):
        TransferConfig(weight_decay=float("inf"))
