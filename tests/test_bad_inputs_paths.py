"""Issue 29, names that become paths and the report CLI: one regression test per case, each asserting its class
(clear error: exit 2 and one `error:` line naming the key or file, the problem and the fix, nothing written;
handled: its outcome). Every user-given name that becomes a file or folder name follows one rule
(oneshot_bench/names.py), and every such key is tried with the same bad values. Nothing may be written outside the
results folder (`confined`), and paths that would leave it are checked explicitly.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SETPRIV, assert_clear_error, copy_record

CASES = [  # (case as the issue names it, class, test)
    ("sweep.study_name=../../../../tmp/x writes the sweep summary outside the results folder", "clear error",
     "test_a_study_name_with_a_path_is_refused_before_any_work[relative]"),
    ("sweep.study_name=/tmp/x writes the sweep summary outside the results folder", "clear error",
     "test_a_study_name_with_a_path_is_refused_before_any_work[absolute]"),
    ("sweep.study_name=<results>/runs/<id>/record overwrites a finished run's record.json", "clear error",
     "test_a_study_name_naming_a_record_leaves_the_record_intact"),
    ("'budget.name=\"x/../../../../tmp/trav\"' writes record.json and .lock to /tmp/trav-s0-.../", "clear error",
     "test_a_budget_name_with_a_path_writes_nothing_anywhere"),
    ("execution.results_dir='' writes runs/ and cache/ into the current directory", "clear error",
     "test_an_empty_folder_setting_is_refused_before_any_work[results_dir-empty]"),
    ("a 5,000-character budget.name is blamed on the results dir", "clear error",
     "test_a_huge_name_is_blamed_on_its_length"),
    ("python -m reports --out <existing file> gives FileExistsError", "clear error",
     "test_report_out_that_is_a_file_is_refused_before_any_work"),
    ("python -m reports --out in a non-writable folder gives PermissionError after building the report",
     "clear error", "test_report_out_in_a_non_writable_folder_is_refused_before_any_work"),
    ("python run.py mode=report execution.report_dir=<file> gives FileExistsError", "clear error",
     "test_report_mode_with_a_file_as_report_dir_is_refused_before_any_work"),
    ("Ctrl-C during python -m reports prints a 45-line KeyboardInterrupt traceback", "handled",
     "test_ctrl_c_during_python_m_reports_is_one_line_and_leaves_the_old_report"),
    ("running from a non-writable working directory gives an OSError traceback (Hydra's outputs/)", "handled",
     "test_a_read_only_working_directory_runs_and_a_multirun_keeps_its_sweep_dir_in_results"),
]

BAD_NAMES = {  # the same bad values for every key whose value becomes a file or folder name
    "dotdot": "../x", "absolute": "/tmp/x", "empty": "", "separator": "a/b", "hidden": ".hidden",
    "huge": "x" * 5000, "non-ascii": "\u00e9t\u00e9",
}
# key -> (extra overrides, what the error line names); method/space/truth names are looked up in their registries,
# whose names all follow the rule (a plugin with another is refused), so a bad one is never used as a path
NAME_KEYS = {
    "budget.name": ((), "budget.name="),
    "sweep.study_name": (("+sweep=spos",), "sweep.study_name="),
    "method.name": ((), "unknown method"),
    "space.name": ((), "unknown space"),
    "truth.name": ((), "unknown truth"),
}


def quoted(value: str) -> str:
    """A value as the shell user quotes it for Hydra (non-ASCII and '/' need no escaping inside quotes)."""
    return f'"{value}"'


def written(results: Path) -> set[str]:
    """What a run wrote into its results folder, Hydra's own log folder aside (it is made before the config is read
    in a run that passes the checks made before Hydra starts)."""
    return {str(p.relative_to(results)) for p in results.rglob("*")
            if p.relative_to(results).parts[0] != "hydra"} if results.is_dir() else set()


# ---- one rule for names ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", NAME_KEYS)
@pytest.mark.parametrize("bad", BAD_NAMES, ids=list(BAD_NAMES))
def test_every_name_key_refuses_every_bad_name(run_cli, tmp_path, key, bad):
    extra, names = NAME_KEYS[key]
    value = BAD_NAMES[bad]
    line = assert_clear_error(run_cli(*extra, f"{key}={quoted(value)}"), names)
    assert len(line) < 700  # a huge value is shortened, not echoed
    if key in ("budget.name", "sweep.study_name"):
        assert "plain file name" in line and "letters, digits" in line and "e.g." in line
    else:
        assert "Valid choices" in line
    assert not written(tmp_path / "results")


@pytest.mark.parametrize("value", ["../../../../tmp/x", "/tmp/x"], ids=["relative", "absolute"])
def test_a_study_name_with_a_path_is_refused_before_any_work(run_cli, tmp_path, value):
    before = set(Path("/tmp").glob("x*"))
    line = assert_clear_error(run_cli("+sweep=spos", f"sweep.study_name={value}",
                                      f"sweep.storage=sqlite:///{tmp_path / 'results' / 'sweeps.db'}"),
                              f"sweep.study_name='{value}'", "path separator", "sweep.study_name=spos-topk")
    assert "results/sweeps/" in line
    assert set(Path("/tmp").glob("x*")) == before
    assert not (tmp_path / "results").exists()  # refused before Hydra made its folder, and before the study


def test_a_study_name_naming_a_record_leaves_the_record_intact(run_cli, tmp_path):
    results = tmp_path / "results"
    record = copy_record(results, "record_v1_nb201-spos.json")
    content = record.read_bytes()
    assert_clear_error(run_cli("+sweep=spos", f"sweep.study_name={record.with_suffix('')}",
                               f"sweep.storage=sqlite:///{results / 'sweeps.db'}"),
                       "sweep.study_name=", "path separator")
    assert record.read_bytes() == content
    assert written(results) == {"runs", f"runs/{record.parent.name}", f"runs/{record.parent.name}/record.json"}


def test_a_budget_name_with_a_path_writes_nothing_anywhere(run_cli, tmp_path):
    before = set(Path("/tmp").glob("trav*"))
    assert_clear_error(run_cli('budget.name="x/../../../../tmp/trav"'), "budget.name='x/../../../../tmp/trav'",
                       "path separator", "run id", "budget.name=cpu_32px")
    assert set(Path("/tmp").glob("trav*")) == before
    # a traversal that would land inside tmp_path, where `confined` sees it: refused the same way
    assert_clear_error(run_cli('budget.name="x/../../../escape"'), "budget.name='x/../../../escape'")
    assert not (tmp_path / "results").exists()


def test_a_huge_name_is_blamed_on_its_length(run_cli, tmp_path):
    line = assert_clear_error(run_cli(f"budget.name={'x' * 5000}"), "budget.name=", "5,000 characters long",
                              "more than the 48")
    assert "results_dir" not in line and len(line) < 700
    assert not (tmp_path / "results").exists()


def test_the_longest_names_make_a_run_id_well_under_the_file_name_limit():
    from evaluators.store import run_id_for
    from oneshot_bench.names import MAX_LENGTH, NAME_MAX, check_name

    longest = "n" * MAX_LENGTH
    assert check_name("budget.name", longest, "x") == longest
    identity = {"space": {"name": longest}, "method": {"name": longest}, "data": {"name": "imagenet"},
                "budget": {"name": longest}, "seed": 2**63 - 1}
    assert len(run_id_for(identity)) <= NAME_MAX - 60


@pytest.mark.parametrize("bad", BAD_NAMES, ids=list(BAD_NAMES))
def test_a_plugin_with_a_bad_name_is_refused(bad):
    from oneshot_bench.errors import ConfigError
    from oneshot_bench.registry import Registry

    registry = Registry("method", "methods")  # a fresh one: the project's registries stay as they are
    with pytest.raises(ConfigError) as error:
        registry.register(BAD_NAMES[bad])
    assert "method name=" in str(error.value) and '@register_method("my_method")' in str(error.value)
    assert "letters, digits" in str(error.value) and len(str(error.value)) < 700


def test_every_registered_name_follows_the_rule():
    from evaluators.truth import TRUTHS
    from methods.base import METHODS
    from oneshot_bench.names import is_name
    from search_spaces.base import SPACES

    for registry in (METHODS, SPACES, TRUTHS):
        assert registry.names() and all(is_name(n) for n in registry.names()), registry.kind


NOT_ONE_FILE_NAME = {"dotdot": "../x", "absolute": "/tmp/x", "empty": "", "separator": "a/b", "dot": ".",
                     "dotdot-alone": "..", "nul": "a\0b", "over-NAME_MAX": "x" * 300}


@pytest.mark.parametrize("bad", NOT_ONE_FILE_NAME, ids=list(NOT_ONE_FILE_NAME))
def test_run_folders_and_summaries_stay_inside_their_root(tmp_path, bad):
    """The second line behind the rule: a run id (e.g. built from a hand-edited record's method) or a summary name
    that is not one file name never places a file outside the store."""
    from evaluators.store import ResultsStore
    from evaluators.transfer import TransferStore, looks_like_run_id
    from oneshot_bench.errors import ConfigError
    from oneshot_bench.names import path_inside

    value = NOT_ONE_FILE_NAME[bad]
    for store in (ResultsStore(tmp_path / "results"), TransferStore(tmp_path / "results")):
        for make in (store.run_dir, store.record_path, store.checkpoint_path, store.progress_path):
            with pytest.raises(ConfigError, match="run id"):
                make(value)
    with pytest.raises(ConfigError, match="sweep.study_name"):
        path_inside(tmp_path / "results" / "sweeps", value, key="sweep.study_name")
    assert not looks_like_run_id(value)  # transfer.source: never looked up as a run folder
    assert not (tmp_path / "results").exists()


def test_every_committed_run_id_is_still_a_run_folder_name():
    from evaluators.store import ResultsStore
    from evaluators.transfer import looks_like_run_id

    folders = sorted((REPO / "results" / "measured").glob("*/runs/*/record.json"))
    assert folders
    for record in folders:
        run_id = record.parent.name
        assert looks_like_run_id(run_id)
        assert ResultsStore(record.parents[2]).record_path(run_id) == record


# ---- folders that must be folders ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value", "extra"), [
    ("execution.results_dir", "", ()),
    ("execution.results_dir", " ", ()),
    ("execution.cache_dir", "", ()),
    ("execution.report_dir", "", ("mode=report",)),
], ids=["results_dir-empty", "results_dir-blank", "cache_dir-empty", "report_dir-empty"])
def test_an_empty_folder_setting_is_refused_before_any_work(run_cli, tmp_path, key, value, extra):
    assert_clear_error(run_cli(*extra, f"{key}={quoted(value)}"), f"{key}={value!r}", "current directory",
                       "e.g. execution.")
    assert not (tmp_path / "results").exists()  # `confined` checks the working folder stayed empty


def test_a_null_cache_dir_stays_the_default(smoke_config, tmp_path):
    assert smoke_config("execution.cache_dir=null").execution.cache_dir is None


def test_a_results_dir_that_is_a_file_is_refused_before_hydra_writes_into_it(run_cli, confined):
    blocker = confined / "a-file"
    blocker.write_text("not a folder")
    assert_clear_error(run_cli(results=blocker), f"execution.results_dir='{blocker}'", "is a file")
    assert blocker.read_text() == "not a folder"


# ---- the report CLI ------------------------------------------------------------------------------------------------
def report_cli(capsys, *args: str) -> tuple[int, str, str]:
    from reports.__main__ import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def never_built(monkeypatch):
    """Fail the test if the report is built (the checks come before any work)."""
    import reports.build

    def build(*args, **kwargs):
        raise AssertionError("the report was built before its folders were checked")

    monkeypatch.setattr(reports.build, "build_report", build)


def test_report_out_that_is_a_file_is_refused_before_any_work(confined, tmp_path, capsys, never_built):
    (tmp_path / "results").mkdir()
    target = confined / "report.html"
    target.write_text("a file")
    assert_clear_error(report_cli(capsys, "--results", str(tmp_path / "results"), "--out", str(target)),
                       f"--out '{target}'", "is a file, not a folder", "new folder")
    assert_clear_error(report_cli(capsys, "--results", str(tmp_path / "results"), "--out", str(target / "sub")),
                       f"--out '{target / 'sub'}'", "is a file")
    assert_clear_error(report_cli(capsys, "--results", str(tmp_path / "results"), "--out", " "), "--out is empty")
    assert target.read_text() == "a file"


def test_report_results_that_do_not_exist_are_refused(confined, tmp_path, capsys, never_built):
    assert_clear_error(report_cli(capsys, "--results", str(tmp_path / "none"), "--out", str(tmp_path / "results")),
                       "does not exist", "--results")
    assert not (tmp_path / "results").exists()


def test_report_out_in_a_non_writable_folder_is_refused_before_any_work(confined, tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is missing: as root, a chmod 555 folder stays writable without it")
    (tmp_path / "results").mkdir()
    copy_record(tmp_path / "results", "record_v1_nb201-spos.json")  # a report that takes seconds to build
    locked = confined / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        start = time.perf_counter()
        r = subprocess.run([*SETPRIV, sys.executable, "-m", "reports", "--results", str(tmp_path / "results"),
                            "--out", str(locked / "out")], cwd=tmp_path / "cwd", capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
        seconds = time.perf_counter() - start
    finally:
        locked.chmod(0o755)
    assert_clear_error((r.returncode, r.stdout, r.stderr), f"--out '{locked / 'out'}'", "not writable",
                       "Permission denied", "new folder")
    assert "wrote" not in r.stdout and not list(locked.iterdir())
    assert seconds < 30  # checked before the report's libraries are even imported


def test_report_mode_with_a_file_as_report_dir_is_refused_before_any_work(run_cli, confined, tmp_path, never_built):
    (tmp_path / "results").mkdir()
    target = confined / "report.html"
    target.write_text("a file")
    assert_clear_error(run_cli("mode=report", f"execution.report_dir={target}"),
                       f"execution.report_dir='{target}'", "is a file", "execution.report_dir=reports/out")
    assert target.read_text() == "a file"
    assert not written(tmp_path / "results") and not (tmp_path / "results" / "hydra").exists()


def test_report_mode_refuses_missing_results_before_hydra_makes_them(run_cli, tmp_path, never_built):
    """Hydra's folder lives under execution.results_dir: checked before Hydra starts, a missing results folder is
    still named (and not created)."""
    missing = tmp_path / "results" / "none"
    assert_clear_error(run_cli("mode=report", f"execution.report_dir={tmp_path / 'results' / 'out'}",
                               results=missing), "does not exist", "execution.results_dir")
    assert not missing.exists()


@pytest.mark.parametrize("where", ["reading records", "writing the report"])
def test_ctrl_c_during_python_m_reports_is_one_line_and_leaves_the_old_report(confined, tmp_path, capsys,
                                                                              monkeypatch, where):
    import reports.build

    (tmp_path / "results").mkdir()
    out = tmp_path / "results" / "out"
    out.mkdir()
    (out / "report.html").write_text("the previous report")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "reading records":
        monkeypatch.setattr(reports.build, "load_records", interrupt)
    else:  # Ctrl-C while the new report's bytes are being flushed to its temporary file
        monkeypatch.setattr(os, "fsync", interrupt)
    code, stdout, stderr = report_cli(capsys, "--results", str(tmp_path / "results"), "--out", str(out))
    assert code == 130 and stderr.strip().splitlines() == [stderr.strip()]
    assert stderr.startswith("interrupted;") and "rerun the same command" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]  # no half-written file, no temporary one
    assert (out / "report.html").read_text() == "the previous report"


# ---- a read-only working directory -------------------------------------------------------------------------------
def test_a_read_only_working_directory_runs_and_a_multirun_keeps_its_sweep_dir_in_results(tmp_path):
    """Hydra's own output folder lives under execution.results_dir (conf/config.yaml), so a run from a folder the
    user cannot write works; a multirun still has its sweep dir (submitit keeps job files there), under results."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is missing: as root, a chmod 555 folder stays writable without it")
    cwd, results = tmp_path / "read-only", tmp_path / "results"
    cwd.mkdir()
    cwd.chmod(0o555)
    command = [*SETPRIV, sys.executable, str(REPO / "run.py")]
    settings = [f"execution.results_dir={results}", "device=cpu", "execution.threads=1", "budget.search_epochs=0"]
    try:
        single = subprocess.run([*command, *settings, "seed=0"], cwd=cwd, capture_output=True, text=True,
                                timeout=300)
        multi = subprocess.run([*command, "-m", *settings, "seed=0,1"], cwd=cwd, capture_output=True, text=True,
                               timeout=300)
    finally:
        cwd.chmod(0o755)
    assert single.returncode == 0, single.stderr[-2000:]
    assert multi.returncode == 0, multi.stderr[-2000:]
    assert not list(cwd.iterdir())
    records = sorted(results.glob("runs/*/record.json"))
    assert [json.loads(p.read_text())["seed"] for p in records] in ([0, 1], [1, 0])
    (sweep_dir,) = results.glob("multirun/*/*")
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]  # one job folder per run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["read-only", "results"]


def test_a_full_disk_while_writing_the_report_is_one_clear_error(confined, tmp_path, capsys, monkeypatch):
    import errno

    (tmp_path / "results").mkdir()
    out = tmp_path / "results" / "out"

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    assert_clear_error(report_cli(capsys, "--results", str(tmp_path / "results"), "--out", str(out)),
                       str(out / "report.html"), "No space left", "give --out another folder")
    assert not list(out.iterdir())
