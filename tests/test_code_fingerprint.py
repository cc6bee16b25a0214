"""A code fingerprint in every record (issue 29, item 8): reusing a finished record made by other code says so, a
plain run recomputes it (keeping the old one beside the new, named by its fingerprint), `execution.reuse=stale`
reuses it, rendering reuses whatever made it, and the fingerprint never enters a run's id.

"Other code" is simulated without touching the repository: `evaluators.fingerprint.file_sha256` is patched to hash
one module as if a line had been added to it."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import REPO, assert_clear_error, copy_record

import evaluators.fingerprint as fingerprint
from evaluators.record import RunRecord
from evaluators.store import ResultsStore
from reports import reproduce
from reports.metadata import code_label

CASES = [
    ("A code fingerprint in every record, beside the commit", "handled",
     "test_a_record_carries_its_code_fingerprint_and_file_hashes"),
    ("The fingerprint covers the method's, space's and truth's modules and the shared training code; line endings "
     "do not change it", "pass", "test_the_fingerprint_covers_the_components_and_not_line_endings"),
    ("An identical run with the same code reuses the finished record", "handled",
     "test_the_same_code_reuses_the_finished_record"),
    ("Today an edited method silently returns the old record as \"already finished\": a plain run recomputes, "
     "keeping the old record beside the new one named by its fingerprint", "handled",
     "test_an_edited_method_is_recomputed_and_its_old_record_kept_beside"),
    ("execution.reuse=stale reuses a record made by other code, saying which files changed", "handled",
     "test_reuse_stale_returns_the_old_record_naming_the_changed_file"),
    ("A legacy record (no fingerprint): computing recomputes it", "handled",
     "test_a_legacy_record_is_recomputed_by_a_run"),
    ("A legacy record: rendering reuses it and labels it with its commit", "handled",
     "test_rendering_reuses_a_legacy_record_and_labels_its_commit"),
    ("reports.reproduce renders committed results: its runs reuse any finished record unless the user asks to "
     "compute", "handled", "test_reproduce_reuses_stale_records_unless_asked_to_compute"),
    ("Resuming a checkpoint written by other code mixes code versions", "clear error",
     "test_a_checkpoint_of_other_code_is_refused_naming_resume_false"),
    ("Resuming per-arch progress written by other code", "handled",
     "test_progress_of_other_code_is_set_aside_and_redone"),
    ("The fingerprint is not part of the run id (committed ids unchanged: tests/test_store_identity.py)", "pass",
     "test_the_fingerprint_is_not_in_the_run_id"),
    ("execution.reuse with an unknown value", "clear error", "test_an_unknown_reuse_value_is_a_clear_error"),
    ("A recompute keeps the old record's artifacts beside it too", "handled",
     "test_a_recompute_keeps_the_old_records_artifacts_beside_it"),
    ("A legacy record's kept-aside name comes from its commit and is a plain file name", "pass",
     "test_a_legacy_records_aside_name_is_a_plain_file_name"),
]

RANDOM = ("method=random", "space=nb201")


@pytest.fixture
def run(run_cli):
    """run_cli with the runner's log messages (Hydra reconfigures the root logger, so they are caught at the
    "oneshot_bench" logger itself): returns (exit code, log text)."""
    import logging

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    lines: list[str] = []
    handler, logger = Keep(logging.INFO), logging.getLogger("oneshot_bench")
    logger.addHandler(handler)

    def invoke(*args: str) -> tuple[int, str]:
        lines.clear()
        code, _, err = run_cli(*args)
        return code, "\n".join(lines) + "\n" + err

    yield invoke
    logger.removeHandler(handler)


def edit(monkeypatch, name: str) -> None:
    """Make the fingerprint see `name` (a repository path) as edited: its hash is that of its bytes plus a line."""
    real = fingerprint.file_sha256

    def hashed(path: Path) -> str:
        if Path(path).resolve() == (REPO / name).resolve():
            return hashlib.sha256(Path(path).read_bytes() + b"# edited\n").hexdigest()
        return real(path)

    monkeypatch.setattr(fingerprint, "file_sha256", hashed)


def only_record(results: Path) -> Path:
    (path,) = (results / "runs").glob("*/record.json")
    return path


def make_legacy(path: Path, commit: str = "abc1234def5678") -> dict:
    """Turn a record into one written before fingerprints: no `code`, another commit."""
    data = json.loads(path.read_text())
    del data["code"]
    data["git_commit"] = commit
    path.write_text(json.dumps(data))
    return data


def test_a_record_carries_its_code_fingerprint_and_file_hashes(run_cli, tmp_path):
    assert run_cli(*RANDOM)[0] == 0
    record = RunRecord.load(only_record(tmp_path / "results"))
    assert record.code is not None and len(record.code.fingerprint) == 64 and record.git_commit
    assert {"methods/random_search.py", "methods/base.py", "search_spaces/nb201.py", "evaluators/truth/nb201.py",
            "evaluators/runner.py", "oneshot_bench/training.py"} <= set(record.code.files)
    assert record.code.files["methods/random_search.py"] == hashlib.sha256(
        (REPO / "methods/random_search.py").read_bytes()).hexdigest()
    assert record.code.fingerprint == fingerprint.combine(record.code.files)


def test_the_fingerprint_covers_the_components_and_not_line_endings(tmp_path):
    from methods.spos import SPOS
    from search_spaces.nb201 import NB201Space

    files = {fingerprint.display_path(p) for p in fingerprint.component_files(SPOS)}
    assert {"methods/spos.py", "methods/supernet.py", "methods/base.py", "methods/bn_scoring.py"} <= files
    assert all(name.startswith("methods/") for name in files)  # not torch's, nor the venv's
    assert {"search_spaces/nb201.py", "search_spaces/base.py", "search_spaces/ops.py"} <= {
        fingerprint.display_path(p) for p in fingerprint.component_files(NB201Space)}
    code = fingerprint.code_fingerprint(SPOS, NB201Space)
    assert set(fingerprint.SHARED_FILES) <= set(code.files)
    assert all((REPO / name).is_file() for name in fingerprint.SHARED_FILES)  # the fixed list names real files
    lf, crlf = tmp_path / "lf.py", tmp_path / "crlf.py"
    lf.write_bytes(b"a = 1\nb = 2\n")
    crlf.write_bytes(b"a = 1\r\nb = 2\r\n")
    assert fingerprint.file_sha256(lf) == fingerprint.file_sha256(crlf)


def test_the_same_code_reuses_the_finished_record(run, run_cli, tmp_path):
    assert run_cli(*RANDOM)[0] == 0
    path = only_record(tmp_path / "results")
    before = path.read_bytes()
    code, err = run(*RANDOM)
    assert code == 0 and "already finished; returning its record" in err
    assert path.read_bytes() == before and [p.name for p in path.parent.glob("record*")] == ["record.json"]


def test_an_edited_method_is_recomputed_and_its_old_record_kept_beside(run, run_cli, tmp_path, monkeypatch):
    assert run_cli(*RANDOM)[0] == 0
    path = only_record(tmp_path / "results")
    old = RunRecord.load(path)
    old_bytes = path.read_bytes()
    edit(monkeypatch, "methods/random_search.py")
    code, err = run(*RANDOM)
    assert code == 0 and "recomputing it" in err and "methods/random_search.py" in err, err
    new = RunRecord.load(path)
    assert new.run_id == old.run_id and new.code.fingerprint != old.code.fingerprint
    assert new.finished_at != old.finished_at  # computed again, not returned
    assert new.code.files["methods/random_search.py"] != old.code.files["methods/random_search.py"]
    kept = path.with_name(f"record.{old.code.fingerprint[:12]}.json")
    assert kept.read_bytes() == old_bytes
    # readers of runs/*/record.json see only the current record
    from reports.records import load_records

    assert [r.finished_at for r in ResultsStore(tmp_path / "results").records()] == [new.finished_at]
    assert [r.finished_at for r in load_records(tmp_path / "results")] == [new.finished_at]


def test_reuse_stale_returns_the_old_record_naming_the_changed_file(run, run_cli, tmp_path, monkeypatch):
    assert run_cli(*RANDOM)[0] == 0
    path = only_record(tmp_path / "results")
    before = path.read_bytes()
    edit(monkeypatch, "methods/random_search.py")
    code, err = run(*RANDOM, "execution.reuse=stale")
    assert code == 0 and path.read_bytes() == before
    warning = next(line for line in err.splitlines() if "already finished, but" in line)
    assert "other code" in warning and "methods/random_search.py" in warning and "execution.reuse=stale" in warning
    assert [p.name for p in path.parent.glob("record*")] == ["record.json"]


def test_a_legacy_record_is_recomputed_by_a_run(run, run_cli, tmp_path):
    assert run_cli(*RANDOM)[0] == 0
    path = only_record(tmp_path / "results")
    legacy = make_legacy(path)
    code, err = run(*RANDOM)
    assert code == 0 and "no code fingerprint (a legacy record, commit abc1234)" in err and "recomputing" in err
    assert RunRecord.load(path).code is not None
    kept = path.with_name("record.legacy-abc1234def56.json")
    assert json.loads(kept.read_text()) == legacy
    # ... while execution.reuse=stale would have returned it
    make_legacy(path, "fedcba987654")
    code, err = run(*RANDOM, "execution.reuse=stale")
    assert code == 0 and RunRecord.load(path).code is None and "returning that record" in err


def test_rendering_reuses_a_legacy_record_and_labels_its_commit(tmp_path):
    from reports.build import build_report

    copy_record(tmp_path / "results", "record_v1_nb201-spos.json")
    (record,) = ResultsStore(tmp_path / "results").records()
    assert record.code is None
    label = code_label(record)
    assert label.startswith("legacy record") and record.git_commit[:7] in label
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert "legacy record (no code fingerprint), commit " + record.git_commit[:7] in html
    # a record of this checkout's code, and one whose method file differs from it
    this = dict(json.loads((tmp_path / "results" / "runs" / record.run_id / "record.json").read_text()))
    files = {name: fingerprint.file_sha256(REPO / name) for name in ("methods/spos.py", "evaluators/runner.py")}
    this["code"] = {"fingerprint": fingerprint.combine(files), "files": files}
    assert code_label(RunRecord.from_dict(this)).startswith("this checkout's")
    this["code"]["files"] = dict(files, **{"methods/spos.py": "0" * 64})
    assert "differs from this checkout: methods/spos.py" in code_label(RunRecord.from_dict(this))
    # a hand-edited record naming a path outside the repository: never read, labelled as gone
    this["code"]["files"] = {"../../../etc/hostname.py": "0" * 64, "/etc/passwd": "0" * 64}
    assert fingerprint.changed_on_disk(this["code"]["files"]) == ["-../../../etc/hostname.py", "-/etc/passwd"]


def test_reproduce_reuses_stale_records_unless_asked_to_compute(monkeypatch, tmp_path, capsys):
    ran = []
    monkeypatch.setattr(reproduce, "run_all", lambda commands, *a: ran.extend(commands) or (0, [], 0.0))
    monkeypatch.setattr("reports.build.build_report", lambda results, out: Path(out) / "report.html")
    monkeypatch.setenv("ONESHOT_CIFAR10_ROOT", str(tmp_path))
    copy_record(tmp_path / "r", "record_v1_nb201-spos.json")
    assert reproduce.main(["nb201_weight_sharing", "--seeds", "0", "--results", str(tmp_path / "r")]) == 0
    assert ran and all("execution.reuse=stale" in cmd for _, cmd in ran)
    assert "1 x legacy record (no code fingerprint), commit" in capsys.readouterr().out
    ran.clear()
    assert reproduce.main(["nb201_weight_sharing", "--seeds", "0", "--results", str(tmp_path / "r"),
                           "execution.reuse=current"]) == 0
    assert all("execution.reuse=stale" not in cmd and "execution.reuse=current" in cmd for _, cmd in ran)


def test_a_checkpoint_of_other_code_is_refused_naming_resume_false(run_cli, tmp_path, monkeypatch):
    from methods.spos import SPOS

    args = ("method=spos", "space=mbnet_chain", "budget.search_epochs=3")
    original = SPOS.train_epoch

    def crash_at_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(SPOS, "train_epoch", crash_at_epoch_2)
    assert run_cli(*args)[0] == 130
    (checkpoint,) = (tmp_path / "results" / "runs").glob("*/checkpoint.pt")
    saved = checkpoint.read_bytes()
    monkeypatch.setattr(SPOS, "train_epoch", original)
    edit(monkeypatch, "methods/supernet.py")
    line = assert_clear_error(run_cli(*args), str(checkpoint), "other code", "methods/supernet.py",
                              "execution.resume=false")
    assert "Traceback" not in line and checkpoint.read_bytes() == saved  # nothing resumed, nothing trained
    code, _, _ = run_cli(*args, "execution.resume=false")
    assert code == 0 and not checkpoint.exists()
    assert [h["epoch"] for h in RunRecord.load(only_record(tmp_path / "results")).history] == [0, 1, 2]


def test_progress_of_other_code_is_set_aside_and_redone(run, run_cli, tmp_path, monkeypatch):
    from methods.random_search import RandomSearch

    original, scored = RandomSearch.score, []

    def crash_after_three(self, archs):
        if len(scored) == 3:
            raise KeyboardInterrupt
        scored.append(archs)
        return original(self, archs)

    monkeypatch.setattr(RandomSearch, "score", crash_after_three)
    assert run_cli(*RANDOM)[0] == 130
    (progress,) = (tmp_path / "results" / "runs").glob("*/progress.json")
    assert len(json.loads(progress.read_text())["ranking"]) == 3
    scored.clear()
    monkeypatch.setattr(RandomSearch, "score", lambda self, archs: scored.append(archs) or original(self, archs))
    edit(monkeypatch, "methods/random_search.py")
    code, err = run(*RANDOM)
    assert code == 0 and "was written by other code" in err
    record = RunRecord.load(only_record(tmp_path / "results"))
    assert len(scored) == record.ranking.n  # every sample arch scored again (reused progress would give n - 3)
    assert progress.with_name("progress.json.corrupt").is_file()


def test_the_fingerprint_is_not_in_the_run_id(run_cli, tmp_path, monkeypatch):
    assert run_cli(*RANDOM)[0] == 0
    old = RunRecord.load(only_record(tmp_path / "results"))
    edit(monkeypatch, "evaluators/runner.py")
    assert run_cli(*RANDOM)[0] == 0
    new = RunRecord.load(only_record(tmp_path / "results"))  # the same folder: the same run id
    assert new.run_id == old.run_id and new.config == old.config and new.code != old.code


def test_an_unknown_reuse_value_is_a_clear_error(run_cli, tmp_path):
    assert_clear_error(run_cli(*RANDOM, "execution.reuse=always"), "execution.reuse", "current", "stale")
    assert not (tmp_path / "results" / "runs").exists()


def test_a_recompute_keeps_the_old_records_artifacts_beside_it(tmp_path):
    """The kept record's artifacts (e.g. GHN's derive_candidates.json) are kept under the same tag, so the old record
    still has the files it names; a recompute by the same code (force=true) replaces them as before."""
    from evaluators.record import Code
    from evaluators.store import run_id_for

    store = ResultsStore(tmp_path)
    old = RunRecord.load(REPO / "tests" / "data" / "record_v1_nb201-spos.json")
    old.run_id = run_id_for(old.config)  # (the migrated config's own id, as a record written now has)
    old.artifacts, old.code = ["derive_candidates.json"], Code(fingerprint="a" * 64, files={"methods/x.py": "1" * 64})
    store.save_record(old.run_id, old, {"derive_candidates": [{"arch": "old"}]})
    new = RunRecord.from_dict(old.to_dict())
    new.code = Code(fingerprint="b" * 64, files={"methods/x.py": "2" * 64})
    run_dir = store.save_record(new.run_id, new, {"derive_candidates": [{"arch": "new"}]}).parent
    assert json.loads((run_dir / f"derive_candidates.{'a' * 12}.json").read_text()) == [{"arch": "old"}]
    assert json.loads((run_dir / "derive_candidates.json").read_text()) == [{"arch": "new"}]
    assert RunRecord.load(run_dir / f"record.{'a' * 12}.json").code == old.code
    assert RunRecord.load(run_dir / "record.json").code == new.code
    store.save_record(new.run_id, new, {"derive_candidates": [{"arch": "newer"}]})  # same code: nothing kept
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == [
        "derive_candidates.aaaaaaaaaaaa.json", "derive_candidates.json", "record.aaaaaaaaaaaa.json", "record.json"]
    assert [r.code for r in store.records()] == [new.code]


@pytest.mark.parametrize("commit, tag", [("0123456789abcdef0123", "legacy-0123456789ab"),
                                         ("0123456789abcdef+dirty", "legacy-0123456789ab-dirty"),
                                         ("../../x", "legacy-______x")])
def test_a_legacy_records_aside_name_is_a_plain_file_name(commit, tag):
    record = RunRecord.load(REPO / "tests" / "data" / "record_v1_nb201-spos.json")
    record.git_commit = commit
    assert ResultsStore.aside_tag(record) == tag
