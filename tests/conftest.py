"""Shared fixtures. Tests read real data from ../shared/data (CI clones the repo beside it) or $ONESHOT_SHARED_DATA."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from evaluators.hydra_config import register_configs

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ONESHOT_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset"

# Test models are tiny: one thread is fastest, and several OpenMP threads on a loaded 2-core machine spin at
# barriers (a 1x1 conv step measured 0.4 ms with 1 thread vs 75 ms with 2 under load).
torch.set_num_threads(1)
register_configs()  # Hydra's schemas (RunConfig, each method's and truth source's parameters), as run.py does
os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the CLI subprocesses


def perturb_bn(module: torch.nn.Module, seed: int) -> None:
    """Random BN statistics and affine params, so a wrongly mapped or missing tensor changes the output."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            if m.affine:  # (a supernet's non-affine choice BNs have none)
                m.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=g))
                m.bias.data.copy_(0.2 * torch.randn(n, generator=g))


def assert_subnets_equal_standalone(space, supernet, net, archs, side: int) -> None:
    """Each arch's standalone net, loaded strictly with the supernet's subnet weights, computes the supernet's
    single-path output in eval mode (also for channels_last input)."""
    torch.manual_seed(side)
    x = torch.randn(2, net.in_channels, side, side)
    for arch in archs:
        standalone = space.build_standalone(arch, net)
        standalone.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
        standalone.eval()
        with torch.no_grad():
            expected = supernet(x, space.arch_to_path(arch))
            out = standalone(x)
            out_cl = standalone(x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(out, expected, atol=1e-5), space.encode(arch)
        assert torch.allclose(out_cl, expected, atol=1e-5), space.encode(arch)


def assert_generated_forward_equals_standalone(method, space, arch, net, x) -> None:
    """A hypernet method (GHN, SMASH) generates every parameter of `arch`'s standalone net, and its forward with
    those weights equals the standalone net loaded strictly with them (batch-statistic BN, as the method runs)."""
    plan = method.plan(arch)
    params = method.generate(plan)
    assert set(params) == {n for n, _ in plan.net.named_parameters()}
    out = method.run(plan, params, x)
    standalone = space.build_standalone(arch, net)
    standalone.load_state_dict({**{k: v.detach() for k, v in params.items()}, **plan.buffers}, strict=True)
    standalone.train()
    torch.testing.assert_close(out, standalone(x), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    if not (CIFAR_SUBSET / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR_SUBSET} (set ONESHOT_SHARED_DATA)")
    return CIFAR_SUBSET


@pytest.fixture(scope="session")
def truth_cache(tmp_path_factory) -> Path:
    """One ground-truth cache for the session: trained truth is the same for every method, as in real use."""
    return tmp_path_factory.mktemp("truth-cache")


@pytest.fixture
def smoke_config(tmp_path, truth_cache):
    """A RunConfig with the smoke budget (as conf/budget/smoke.yaml) writing into a temp results dir."""
    from hydra import compose, initialize_config_dir

    from oneshot_bench.config import from_dictconfig

    def make(*overrides: str):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=[f"execution.results_dir={tmp_path / 'results'}",
                                                  f"execution.cache_dir={truth_cache}", "device=cpu", *overrides])
        return from_dictconfig(cfg)

    return make


def copy_record(results_dir: Path, fixture: str, *, run_id: str | None = None, method: str | None = None,
                params: dict | None = None) -> Path:
    """A saved record (tests/data) placed in a results store as runs/<run_id>/record.json, optionally with another
    run id, method name or method params; returns its path."""
    import json

    record = json.loads((Path(__file__).parent / "data" / fixture).read_text())
    if run_id is not None:
        record["run_id"] = run_id
    if method is not None:
        record["method"] = record["config"]["method"]["name"] = method
    if params is not None:
        record["config"]["method"]["params"] = params
    path = Path(results_dir) / "runs" / record["run_id"] / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


# ---- bad inputs and faults (tests/test_bad_inputs*.py) ---------------------------------------------------------------
SETPRIV = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]  # root without its permission override


def assert_clear_error(result: tuple[int, str, str], *needles: str) -> str:
    """A clear error: exit 2, exactly one `error:` line holding every needle, no traceback; returns the line."""
    code, _, err = result
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def cifar_copy(folder: Path) -> Path:
    """A writable copy of the real CIFAR-10 subset's batches under `folder` (a test may change or break them)."""
    import shutil

    if not (CIFAR_SUBSET / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR_SUBSET}")
    target = folder / "cifar" / "cifar-10-batches-py"
    shutil.copytree(CIFAR_SUBSET / "cifar-10-batches-py", target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def interrupted_run(cli, monkeypatch, *args: str, after_epoch: int = 0) -> None:
    """A run stopped by Ctrl-C after `after_epoch` (its checkpoint written, no record): `cli` is a run_cli-like
    callable; the method is the one named by `method=` in `args`."""
    from methods.base import METHODS

    method = next(a.split("=")[1] for a in args if a.startswith("method="))
    cls = METHODS.get(method)
    original = cls.train_epoch

    def dies(self, epoch):
        if epoch > after_epoch:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(cls, "train_epoch", dies)
    assert cli(*args)[0] == 130  # Ctrl-C: one line and exit 130 (tests/test_bad_inputs_os.py)
    monkeypatch.setattr(cls, "train_epoch", original)


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.is_dir() else set()


def repo_files() -> set[str]:
    """Every untracked or ignored file of the repository, caches aside (what a run could have written there)."""
    import subprocess

    out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return {line[3:] for line in out.splitlines() if line[:2] in ("??", "!!")
            and not any(part in line for part in ("__pycache__", ".pytest_cache", ".benchmarks", ".ruff_cache",
                                                  ".venv", ".egg-info", ".ci-venv"))}


@pytest.fixture
def confined(tmp_path, monkeypatch):
    """Runs the test from an empty working folder, `tmp_path/cwd`, and fails it if anything was written outside the
    results folder `tmp_path/results`: in the working folder, in the repository, or elsewhere in `tmp_path` than
    `results/` and `inputs/` (where a test puts the files it feeds in). The probe's "nothing written outside the
    results dir", checked after every bad-input test that uses it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (tmp_path / "inputs").mkdir()
    before = repo_files()
    monkeypatch.chdir(cwd)
    yield tmp_path / "inputs"
    assert not tree(cwd), f"written to the working folder: {sorted(tree(cwd))[:5]}"
    stray = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("results", "inputs", "cwd"))
    assert not stray, f"written beside the results folder: {stray}"
    new = sorted(repo_files() - before)
    assert not new, f"written into the repository: {new[:5]}"


@pytest.fixture
def run_cli(tmp_path, capsys, confined):
    """`python run.py ARGS` in-process (run.cli: the same checks and exit codes), results in tmp_path/results, from
    an empty working folder, and nothing may be written outside the results folder (`confined`); returns
    (exit code, stdout, stderr)."""
    import sys

    sys.path.insert(0, str(REPO))
    import run

    def invoke(*args: str, results: Path | None = None) -> tuple[int, str, str]:
        results = results or tmp_path / "results"
        code = run.cli([f"execution.results_dir={results}", "execution.threads=1", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke
