"""The command line as a user meets it: clear one-line errors for bad input, a summary table for good input."""
import subprocess
import sys

import pytest
from conftest import REPO


def run_cli(*args, tmp_path):
    return subprocess.run([sys.executable, "run.py", f"execution.results_dir={tmp_path}",
                           "hydra.run.dir=" + str(tmp_path / "h"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_unknown_method_lists_valid_choices(tmp_path):
    r = run_cli("method=nope", tmp_path=tmp_path)
    assert r.returncode != 0
    assert "nope" in r.stderr and "spos" in r.stderr and "random" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_space_lists_valid_choices(tmp_path):
    r = run_cli("space=nope", tmp_path=tmp_path)
    assert r.returncode != 0 and "nb201" in r.stderr and "mbnet_chain" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_cifar_root_names_the_fix(tmp_path):
    r = run_cli("data=cifar10", "data.root=" + str(tmp_path / "nowhere"), tmp_path=tmp_path)
    assert r.returncode == 2 and "missing" in r.stderr and "data.root" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_budget_key_is_named(tmp_path):
    r = run_cli("+budget.epochz=3", tmp_path=tmp_path)
    assert r.returncode == 2 and "epochz" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("space", ["mbnet_chain"])
def test_a_run_prints_its_summary(tmp_path, space):
    r = run_cli("method=spos", f"space={space}", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kendall_tau" in r.stdout and "final accuracy" in r.stdout and "ground truth" in r.stdout
    assert list((tmp_path / "runs").glob("*/record.json"))


def test_truth_mode_shards_fill_the_cache_a_search_run_then_reuses(tmp_path):
    """mode=truth with shards 0/2 and 1/2 trains disjoint halves of the shared sample; a later search run finds
    every sample arch cached (its ground-truth time is file reads only, no training)."""
    common = ("space=darts_cell", "truth=trained", "budget.ranking_sample=4")
    for shard in ("0/2", "1/2"):
        r = run_cli("mode=truth", f"execution.truth_shard={shard}", *common, tmp_path=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "ground truth ready for 2 sample archs of darts_cell" in r.stdout
    cached = list((tmp_path / "cache" / "truth" / "darts_cell").glob("*.json"))
    assert len(cached) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in cached}
    r = run_cli("method=random", *common, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())  # read, never retrained
    r = run_cli("mode=truth", "execution.truth_shard=2/2", *common, tmp_path=tmp_path)
    assert r.returncode == 2 and "i/n" in r.stderr and "Traceback" not in r.stderr


def test_report_mode_rebuilds_the_report_from_records_only(tmp_path):
    r = run_cli("method=spos", "space=mbnet_chain", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "report"
    r = run_cli("mode=report", f"execution.report_dir={out}", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text()
    assert "mbnet_chain" in html and "spos" in html.lower()
    r = run_cli("mode=report", f"execution.report_dir={out}", f"execution.results_dir={tmp_path / 'none'}",
                tmp_path=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
