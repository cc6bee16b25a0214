"""The contract between spaces, methods and the evaluator, held as checks on the code itself:

- the packages form layers (core < spaces < methods < evaluators < reports < run.py) with no upward import;
- no method module names a space or an op: methods read what spaces declare;
- a method's YAML holds only overrides of its Hparams defaults (the dataclass is the one source of them);
- records load without torch, and records of the previous layout still load and render;
- hyperparameters are validated before any data is read.
"""
from __future__ import annotations

import ast
import dataclasses
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from methods import METHODS
from search_spaces import SPACES

LAYERS = {"oneshot_bench": 0, "search_spaces": 1, "methods": 2, "evaluators": 3, "reports": 4, "run": 5}
DATA = Path(__file__).parent / "data"


def _modules() -> list[Path]:
    return [p for pkg in LAYERS if pkg != "run" for p in (REPO / pkg).rglob("*.py")] + [REPO / "run.py"]


def _imported_packages(path: Path) -> set[str]:
    """Top-level project packages a module imports (relative imports stay inside its own package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in _modules():
        own = path.relative_to(REPO).parts[0].removesuffix(".py")
        for package in _imported_packages(path):
            if LAYERS[package] > LAYERS[own]:
                upward.append(f"{path.relative_to(REPO)} imports {package}")
    assert upward == []


def _space_vocabulary() -> tuple[set[str], set[str]]:
    """(space names, op names) of every registered space: decision choices and supernet candidates."""
    names, ops = set(SPACES.names()), set()
    for name in names:
        space = SPACES.get(name)()
        ops |= {c for d in space.decisions for c in d.choices if not c.isdigit()}
        try:
            ops |= {op.name for cp in space.choice_points for op in cp.ops}
        except NotImplementedError:  # a space without a supernet
            pass
    return names, ops


def _code_strings_and_text(path: Path) -> tuple[list[str], str]:
    """(string constants in code, docstrings excluded; all comments and docstrings as one text)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and id(n) not in docstrings]
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
                if t.type == tokenize.COMMENT]
    prose = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) in docstrings]
    return strings, "\n".join(comments + prose)


def test_no_method_module_names_a_space_or_an_op():
    """Code never compares against a space's or an op's name (a string constant equal to one, or containing one
    as a word); prose (docstrings, comments) never names a space or an op that cannot be mistaken for a word (all
    but 'none' and 'identity', which are English too)."""
    spaces, ops = _space_vocabulary()
    assert {"nb201", "darts_cell", "mbnet_chain", "none", "sep_conv_3x3", "mb_k5_e6"} <= spaces | ops
    words = spaces | ops
    distinctive = {w for w in words if re.search(r"[_\d-]", w)}
    hits = []
    for path in sorted((REPO / "methods").glob("*.py")):
        strings, prose = _code_strings_and_text(path)
        for s in strings:
            named = {w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", s)}
            hits += [f"{path.name}: code string {s!r} names {sorted(named)}"] if named else []
        for w in sorted(distinctive):
            if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", prose):
                hits.append(f"{path.name}: prose names {w!r}")
    assert hits == []


def test_the_name_check_catches_a_name(tmp_path):
    """The check above can fail: a module that compares against the zero op's name is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""doc"""\nNONE = "none"\n# works on darts_cell\n')
    strings, prose = _code_strings_and_text(bad)
    assert strings == ["none"] and "darts_cell" in prose


@pytest.mark.parametrize("method", METHODS.names())
def test_method_yaml_holds_only_overrides_of_the_dataclass_defaults(method):
    spec = yaml.safe_load((REPO / "conf" / "method" / f"{method}.yaml").read_text())
    assert spec["name"] == method
    assert f"/schema/method/{method}@_here_" in spec["defaults"]  # Hydra gets the defaults from the dataclass
    defaults = {f.name: f.default for f in dataclasses.fields(METHODS.get(method).Hparams)}
    for key, value in (spec.get("params") or {}).items():
        assert key in defaults, f"{method}.yaml sets unknown parameter {key}"
        assert str(defaults[key]) != str(value), f"{method}.yaml repeats the default of {key}"


def test_records_load_without_torch():
    """Importing the record layer pulls neither torch nor numpy; loading a record checks its correlations against
    its own arrays (issue 29) with scipy, imported then, and still never torch."""
    code = ("import sys; from evaluators.record import RunRecord; "
            "assert 'numpy' not in sys.modules, 'numpy on import'; "
            f"r = RunRecord.load({str(DATA / 'record_v1_nb201-spos.json')!r}); "
            "assert r.method == 'spos'; assert 'torch' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith('torch'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("fixture", sorted(p.name for p in DATA.glob("record_v1_*.json")))
def test_records_of_the_previous_layout_load_and_migrate(fixture):
    from evaluators.record import RECORD_VERSION, RunRecord

    record = RunRecord.load(DATA / fixture)
    assert record.record_version == RECORD_VERSION
    assert record.config["truth"]["name"] in ("nb201", "nas_bench_macro") and "truth_dataset" not in record.config
    assert isinstance(record.ranking.n, int) and record.ranking.n == len(record.ranking.proxy)
    assert record.summary.kendall_tau == record.ranking.kendall_tau
    assert set(record.cost.phases) == {"supernet_train", "ranking", "derive", "final"}
    again = RunRecord.from_dict(record.to_dict())  # the current layout round-trips
    assert again == record


def test_old_records_still_render(tmp_path):
    import json

    from reports.build import build_report

    for fixture in DATA.glob("record_v1_*.json"):  # each in the folder of its run id, as a store holds it
        run_dir = tmp_path / "results" / "runs" / json.loads(fixture.read_text())["run_id"]
        run_dir.mkdir(parents=True)
        (run_dir / "record.json").write_text(fixture.read_text())
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert "2 finished run record(s)" in html
    assert "nb201 / digits / budget=smoke" in html and "mbnet_chain / digits / budget=smoke" in html
    assert "alpha_log_likelihood" not in html or "darts" in html


def test_a_malformed_record_is_refused_naming_the_field(tmp_path):
    import json

    from evaluators.record import RecordError, RunRecord

    data = json.loads((DATA / "record_v1_nb201-spos.json").read_text())
    data["ranking"]["kendall_tau"] = "high"
    path = tmp_path / "record.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"record\.ranking\.kendall_tau must be a number"):
        RunRecord.load(path)


def test_hyperparameters_are_validated_before_any_data_loads(smoke_config, monkeypatch):
    import evaluators.runner as runner
    from oneshot_bench.errors import ConfigError

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the hyperparameters were checked")

    monkeypatch.setattr(runner, "load_data", no_data)
    for bad in ("method.params.mutation_prob=-1", "method.params.topk=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            runner.run_benchmark(smoke_config("method=spos", bad))
    with pytest.raises(ConfigError, match="order must be 1 or 2"):
        runner.run_benchmark(smoke_config("method=darts", "method.params.order=3"))


def test_the_run_id_is_everything_but_the_execution_group(smoke_config):
    from evaluators.runner import plan_run

    base = plan_run(smoke_config("method=spos"))
    moved = plan_run(smoke_config("method=spos", "execution.threads=1", "execution.force=true",
                                  "execution.resume=false", "+sweep=spos", "sweep.n_trials=3"))
    assert moved.run_id == base.run_id and "execution" not in base.identity and "sweep" not in base.identity
    assert plan_run(smoke_config("method=spos", "deterministic=false")).run_id != base.run_id
    assert plan_run(smoke_config("method=spos", "truth=nb201")).run_id == base.run_id  # auto resolves to nb201
    assert plan_run(smoke_config("method=spos", "truth=nb201", "truth.params.dataset=cifar100")).run_id != base.run_id
    assert base.identity["truth"] == {"name": "nb201", "params": {"dataset": "cifar10"}, "verified": True,
                                      "sha256": "cb5d777ec3368be83c8f9b3aa4d520696051cb0eb8d94b8f85b519f9ea4afa3e"}
    assert len(base.identity["data"]["sha256"]) == 64 and "root" not in base.identity["data"]
    assert base.identity["method"]["params"]["topk"] == 10  # defaults filled in


@pytest.mark.parametrize("space_name", SPACES.names())
def test_every_graph_declares_which_decisions_shape_each_node(space_name):
    """`ArchGraph.node_decisions` (read by SMASH's per-position conditioning): one entry per node, valid decision
    indices, none for the stem and head, and every decision shapes some module of some arch (a declaration that
    forgot a decision would make SMASH blind to it)."""
    import random as _random

    from oneshot_bench.config import NetConfig
    from search_spaces.base import TO_GRAPH

    space = SPACES.get(space_name)()
    if TO_GRAPH not in space.capabilities:
        pytest.skip(f"{space_name} has no graph view")
    net = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=3)
    seen: set[int] = set()
    rng = _random.Random(0)
    for _ in range(20):
        graph = space.to_graph(space.sample(rng), net)
        assert len(graph.node_decisions) == len(graph.node_types)
        for v, decisions in enumerate(graph.node_decisions):
            assert all(0 <= d < len(space.decisions) for d in decisions)
            if graph.node_scopes[v] in ("stem", "head"):
                assert decisions == ()
            if graph.node_modules[v] is not None:
                seen |= set(decisions)
    assert seen == set(range(len(space.decisions)))
