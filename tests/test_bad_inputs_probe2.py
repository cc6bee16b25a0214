"""Issue 29's second probe (61 cases of its own, in families the issue does not name): its input-file kinds,
environment, config-edge and results-folder findings, one regression test each. An input file is opened only when
it is a regular file (a FIFO would block, /dev/zero never ends), and what is there instead is named; a path from an
env var names the env var; a deletion (`~method`) never lets a schema default replace a choice; a train split too
small to train on, a thread count past any machine's, a cache or run folder holding a file where a folder must be
(or a directory where a file must be) are refused before any work.

Every test runs `python run.py` in-process (run.cli) from an empty working folder and checks that nothing was
written outside its results folder (conftest's `confined`).
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CIFAR_SUBSET, REPO, assert_clear_error

sys.path.insert(0, str(REPO))

CASES = [  # (case as the probe names it, expected class, test)
    ("#37 a results path with a newline gives 'LexerNoViableAltException' without the fix", "clear error",
     "test_a_value_with_a_newline_names_the_argument_and_the_fix"),
    ("#25 CIFAR batch data_batch_3 a symlink to /dev/zero", "clear error",
     "test_a_cifar_batch_that_is_a_symlink_to_dev_zero_is_named_as_a_device"),
    ("#26 CIFAR batch data_batch_3 a FIFO (mkfifo)", "clear error",
     "test_a_cifar_batch_that_is_a_fifo_is_named_and_never_opened"),
    ("#28 CIFAR batch data_batch_3 a directory", "clear error", "test_a_cifar_batch_that_is_a_directory_is_named"),
    ("#25/#26 (same rule) a shipped truth table replaced by a FIFO, truth.verify=false", "clear error",
     "test_a_truth_table_that_is_a_fifo_is_named_and_never_opened"),
    ("#29 data.root pointing at a file (data_batch_1)", "clear error", "test_a_data_root_that_is_a_file_says_so"),
    ("#30 ONESHOT_CIFAR10_ROOT set to a missing folder (no data.root)", "clear error",
     "test_a_missing_folder_from_the_env_var_names_the_env_var"),
    ("#45 data.val_fraction=0.999 leaves 5 of 5,085 training images", "clear error",
     "test_a_val_fraction_leaving_too_few_training_images_is_refused"),
    ("#42 ~method / method=random ~method / ~data data=cifar10 / ~space (deleting a group)", "clear error",
     "test_deleting_a_required_group_is_refused"),
    ("#42 (same family) seed=3 ~seed, ~execution (deleting a setting)", "clear error",
     "test_deleting_a_setting_is_refused"),
    ("#40 seed=1e3", "clear error", "test_an_integral_float_for_an_integer_key_suggests_the_integer"),
    ("#43 budget.net_by_space.nb999.channels=4", "clear error",
     "test_an_unknown_space_under_net_by_space_lists_the_spaces"),
    ("#43 (same key) budget.net_by_space.nb201.channels=4 on a budget without an nb201 entry", "clear error",
     "test_a_space_the_budget_has_no_entry_for_says_how_to_size_it"),
    ("#47 method.params.topk=null", "clear error", "test_null_for_a_key_that_needs_a_value_gives_its_type_and_default"),
    ("#49 execution.threads=100000", "clear error", "test_a_thread_count_past_any_machine_is_refused"),
    ("#52 execution.cache_dir=<a regular file>", "clear error",
     "test_a_cache_dir_that_is_a_file_is_refused_before_work"),
    ("#52 (same family) the default <results>/cache a file, or cache_dir under a file", "clear error",
     "test_a_cache_folder_blocked_by_a_file_is_refused_before_any_training"),
    ("#32 runs/<id> is a regular file", "clear error", "test_a_run_folder_that_is_a_file_says_to_remove_it"),
    ("#33 record.json is a directory", "clear error",
     "test_a_state_file_that_is_not_a_regular_file_is_refused_before_work"),
    ("#34 checkpoint.pt is a directory", "clear error",
     "test_a_state_file_that_is_not_a_regular_file_is_refused_before_work"),
]

SMALL = ("method=spos", "space=mbnet_chain")  # the smoke budget: a few seconds


@contextmanager
def no_hang(seconds: int = 60):
    """Fail instead of hanging when a FIFO is opened (its open() blocks until a writer comes)."""
    def expire(*_):
        raise TimeoutError(f"no answer within {seconds} s: a FIFO was opened")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def cifar_links(inputs: Path) -> Path:
    """A CIFAR-10 root whose batches are symlinks to the shared subset (a test replaces one); returns the batch
    folder."""
    source = CIFAR_SUBSET / "cifar-10-batches-py"
    if not source.is_dir():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR_SUBSET}")
    folder = inputs / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for path in source.iterdir():
        (folder / path.name).symlink_to(path)
    return folder


def nothing_computed(results: Path) -> None:
    assert not list(results.glob("runs/*/*.pt")) and not list(results.glob("runs/*/record.json"))


# ---- input file kinds (#25, #26, #28, #29) and the env var's path (#30) ------------------------------------------
def test_a_cifar_batch_that_is_a_symlink_to_dev_zero_is_named_as_a_device(run_cli, confined, tmp_path):
    folder = cifar_links(confined)
    (folder / "data_batch_3").unlink()
    (folder / "data_batch_3").symlink_to("/dev/zero")
    with no_hang():
        result = run_cli("data=cifar10", f"data.root={folder.parent}", *SMALL)
    assert_clear_error(result, str(folder / "data_batch_3"), "a symlink to /dev/zero, a character device",
                       "not a regular file", "re-download", "data.root")
    assert "missing" not in result[2]
    nothing_computed(tmp_path / "results")


def test_a_cifar_batch_that_is_a_fifo_is_named_and_never_opened(run_cli, confined, tmp_path):
    folder = cifar_links(confined)
    (folder / "data_batch_3").unlink()
    os.mkfifo(folder / "data_batch_3")
    with no_hang():
        result = run_cli("data=cifar10", f"data.root={folder.parent}", *SMALL)
    assert_clear_error(result, str(folder / "data_batch_3"), "is a FIFO", "not a regular file", "re-download")
    nothing_computed(tmp_path / "results")


def test_a_cifar_batch_that_is_a_directory_is_named(run_cli, confined, tmp_path):
    folder = cifar_links(confined)
    (folder / "data_batch_3").unlink()
    (folder / "data_batch_3").mkdir()
    assert_clear_error(run_cli("data=cifar10", f"data.root={folder.parent}", *SMALL), str(folder / "data_batch_3"),
                       "is a directory, not a regular file", "re-download")
    nothing_computed(tmp_path / "results")


def test_a_truth_table_that_is_a_fifo_is_named_and_never_opened(run_cli, confined, tmp_path, monkeypatch):
    import evaluators.truth.base as base

    tables = confined / "truth-data"  # the shipped tables as links; the package's own stay untouched
    tables.mkdir()
    for path in base.DATA_DIR.iterdir():
        (tables / path.name).symlink_to(path)
    (tables / "nb201_nats_tss_test200.csv").unlink()
    os.mkfifo(tables / "nb201_nats_tss_test200.csv")
    monkeypatch.setattr(base, "DATA_DIR", tables)
    with no_hang():
        result = run_cli("method=spos", "space=nb201", "truth.verify=false")
    assert_clear_error(result, str(tables / "nb201_nats_tss_test200.csv"), "is a FIFO", "not a regular file",
                       "restore it from git")
    nothing_computed(tmp_path / "results")


def test_a_data_root_that_is_a_file_says_so(run_cli, tmp_path):
    batch = CIFAR_SUBSET / "cifar-10-batches-py" / "data_batch_1"
    if not batch.is_file():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR_SUBSET}")
    assert_clear_error(run_cli("data=cifar10", f"data.root={batch}", *SMALL), str(batch), "is a file, not the folder",
                       "point data.root at the folder that holds cifar-10-batches-py/")


def test_a_missing_folder_from_the_env_var_names_the_env_var(run_cli, confined, tmp_path, monkeypatch):
    missing = confined / "nowhere"
    monkeypatch.setenv("ONESHOT_CIFAR10_ROOT", str(missing))
    line = assert_clear_error(run_cli("data=cifar10", *SMALL), str(missing), "does not exist",
                              "point the env var ONESHOT_CIFAR10_ROOT", "data.root is unset", "data.root=<")
    assert "point data.root at" not in line
    assert not missing.exists()


# ---- config edges (#40, #42, #43, #45, #47, #49) ------------------------------------------------------------------
def test_a_val_fraction_leaving_too_few_training_images_is_refused(run_cli, tmp_path):
    if not (CIFAR_SUBSET / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR_SUBSET}")
    assert_clear_error(run_cli("data=cifar10", f"data.root={CIFAR_SUBSET}", "data.val_fraction=0.999", *SMALL),
                       "data.val_fraction=0.999", "leaves 5 of the 5,085 training images", "5,080 for search-val",
                       "at least 64", "lower data.val_fraction, to at most 0.987")
    nothing_computed(tmp_path / "results")


def test_the_train_split_floor_is_the_budgets_own_smaller_cap():
    from oneshot_bench.data import MIN_TRAIN_IMAGES, check_train_split
    from oneshot_bench.errors import ConfigError

    check_train_split(1000, 1000 - MIN_TRAIN_IMAGES, 0.936, None)  # exactly one batch: allowed
    check_train_split(1000, 990, 0.99, 8)  # a deliberate budget.max_train_images=8 asks for no more than 8
    with pytest.raises(ConfigError, match="leaves 63 of the 1,000"):
        check_train_split(1000, 1000 - MIN_TRAIN_IMAGES + 1, 0.937, None)
    with pytest.raises(ConfigError, match="leaves 7 of the 1,000"):
        check_train_split(1000, 993, 0.993, 8)


@pytest.mark.parametrize("overrides, group", [
    (("~method",), "method"), (("method=random", "~method"), "method"), (("~data", "data=cifar10"), "data"),
    (("~space",), "space"), (("~budget",), "budget"), (("~truth",), "truth"), (("~selection",), "selection"),
    (("~mode",), "mode")])
def test_deleting_a_required_group_is_refused(run_cli, tmp_path, overrides, group):
    assert_clear_error(run_cli(*overrides), f"~{group} deletes the {group} group", f"choose one with {group}=<name>")
    assert not (tmp_path / "results").exists()


def test_deleting_a_setting_is_refused(run_cli, tmp_path):
    assert_clear_error(run_cli("seed=3", "~seed"), "~seed deletes a setting", "seed=<value>")
    assert_clear_error(run_cli("~execution"), "~execution deletes the execution settings", "execution.<key>=<value>")
    assert not (tmp_path / "results").exists()


def test_deleting_an_optional_group_is_not_refused_by_the_deletion_rule():
    from evaluators.cli import check_overrides

    check_overrides(["+sweep=darts", "~sweep"], REPO / "conf")  # (Hydra then decides what the deletion means)
    check_overrides(["+transfer=imagenet_mobile", "~transfer"], REPO / "conf")


def test_an_integral_float_for_an_integer_key_suggests_the_integer(run_cli, tmp_path):
    assert_clear_error(run_cli("seed=1e3"), "seed", "1000.0 is a float", "takes an integer", "seed=1000")
    assert_clear_error(run_cli(*SMALL, "method.params.topk=1e3"), "method.params.topk=1000")
    assert not (tmp_path / "results").exists()


def test_an_unknown_space_under_net_by_space_lists_the_spaces(run_cli, tmp_path):
    from search_spaces import SPACES

    line = assert_clear_error(run_cli(*SMALL, "budget.net_by_space.nb999.channels=4"), "'nb999' is not a search space",
                              "budget.net_by_space takes one entry per space")
    assert all(name in line for name in SPACES.names())
    assert_clear_error(run_cli(*SMALL, "budget.final_net_by_space.nope.channels=4"), "'nope' is not a search space")


def test_a_space_the_budget_has_no_entry_for_says_how_to_size_it(run_cli, tmp_path):
    assert_clear_error(run_cli(*SMALL, "budget.net_by_space.nb201.channels=4"), "budget smoke has",
                       "an entry for nb201", "budget.net.channels=<value>", "conf/budget/")


def test_null_for_a_key_that_needs_a_value_gives_its_type_and_default(run_cli, tmp_path):
    assert_clear_error(run_cli(*SMALL, "method.params.topk=null"), "method.params.topk=null is not allowed",
                       "needs an integer", "its default here is", "Drop the method.params.topk=null override")
    assert_clear_error(run_cli("budget.lr=null"), "budget.lr needs a number", "its default here is 0.05",
                       "budget.lr=0.05")
    assert not (tmp_path / "results").exists()


def test_a_thread_count_past_any_machine_is_refused(run_cli, tmp_path):
    # only the refusal is run: 100,000 torch threads ran a shared machine out of memory
    from oneshot_bench.config import MAX_THREADS

    assert_clear_error(run_cli(*SMALL, "execution.threads=100000"), "execution.threads=100000",
                       f"<= {MAX_THREADS}")
    assert not (tmp_path / "results").exists()


# ---- the cache and run folders (#52, #32, #33, #34) ----------------------------------------------------------------
def test_a_cache_dir_that_is_a_file_is_refused_before_work(run_cli, confined, tmp_path):
    blocker = confined / "cfile"
    blocker.write_text("")
    assert_clear_error(run_cli(*SMALL, f"execution.cache_dir={blocker}"), "execution.cache_dir=",
                       "it is a file, not a folder", "name a folder")
    nothing_computed(tmp_path / "results")


@pytest.mark.parametrize("where", ["default", "under a file", "truth"])
def test_a_cache_folder_blocked_by_a_file_is_refused_before_any_training(run_cli, confined, tmp_path, where):
    results = tmp_path / "results"
    results.mkdir()
    args: tuple[str, ...] = ()
    if where == "default":
        (blocker := results / "cache").write_text("")
        needles = (f"{blocker} is a file, not a folder", "remove it", "execution.cache_dir=<dir>")
    elif where == "under a file":
        (blocker := confined / "cfile").write_text("")
        args = (f"execution.cache_dir={blocker / 'sub'}",)
        needles = (f"{blocker} is a file, not a folder", "execution.cache_dir=<dir>")
    else:
        (results / "cache").mkdir()
        (blocker := results / "cache" / "truth").write_text("")
        needles = (f"{blocker} is a file, not a folder", "remove it")
    assert_clear_error(run_cli(*SMALL, *args), *needles)
    nothing_computed(results)
    assert blocker.read_text() == ""


def run_folder(results: Path) -> Path:
    """The run folder SMALL would use in `results` (its id from the plan: nothing is computed)."""
    from evaluators.cli import check_composes
    from evaluators.runner import plan_run
    from oneshot_bench.config import from_dictconfig

    cfg = from_dictconfig(check_composes([f"execution.results_dir={results}", *SMALL], REPO / "conf"))
    plan = plan_run(cfg)
    return plan.store.run_dir(plan.run_id)


def test_a_run_folder_that_is_a_file_says_to_remove_it(run_cli, tmp_path):
    folder = run_folder(tmp_path / "results")
    folder.parent.mkdir(parents=True)
    folder.write_text("")
    assert_clear_error(run_cli(*SMALL), str(folder), "is a file, not a run folder", "remove it")
    assert folder.is_file()


@pytest.mark.parametrize("name, make", [("record.json", "dir"), ("checkpoint.pt", "dir"), ("progress.json", "dir"),
                                        (".lock", "fifo"), ("record.json", "fifo")])
def test_a_state_file_that_is_not_a_regular_file_is_refused_before_work(run_cli, tmp_path, name, make):
    folder = run_folder(tmp_path / "results")
    folder.mkdir(parents=True)
    path = folder / name
    path.mkdir() if make == "dir" else os.mkfifo(path)
    with no_hang():
        result = run_cli(*SMALL)
    kind = "a directory" if make == "dir" else "a FIFO"
    assert_clear_error(result, str(path), f"is {kind}", "not a regular file", "remove it", "rerun the same command")
    assert not [p for p in folder.iterdir() if p.is_file() and p.name != ".lock"]  # nothing trained or recorded
    shutil.rmtree(path) if make == "dir" else path.unlink()
    code, _, err = run_cli(*SMALL)  # the fix works: the same command then runs
    assert code == 0, err
    assert (folder / "record.json").is_file()


def test_a_value_with_a_newline_names_the_argument_and_the_fix(run_cli, tmp_path):
    line = assert_clear_error(run_cli(f"execution.results_dir={tmp_path / 'results'}\nline"), "results_dir",
                              "control character", "remove it")
    assert "LexerNoViableAltException" not in line
    assert not (tmp_path / "results").exists()
