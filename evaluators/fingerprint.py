"""Which code made a result: a sha256 over the source files a run executes, kept in its record beside the commit.

A git commit alone does not say it: runs are made from uncommitted trees (`+dirty`), and a commit that changed only
a report leaves every record valid. The fingerprint covers

- the modules of the run's **method, search space and ground-truth source**: every class in each one's MRO whose
  module lies in this repository (or in the component's own top-level package, for a plugin outside it), plus the
  modules these import, directly or not, from their own packages (`methods`, `search_spaces`, `evaluators.truth`,
  a plugin's package), found by reading their `import` statements (those inside functions too). E.g.
  `method=spos space=nb201` with its NB201 truth covers methods/spos.py, supernet.py, base.py, bn_scoring.py,
  constraints.py, evolution.py; search_spaces/nb201.py, base.py, ops.py; evaluators/truth/nb201.py, base.py.
  Modules of other packages are covered as the list below or another component names them;
- the **shared training and evaluation code**, the fixed list `SHARED_FILES` below (the one place it is kept): what
  every run trains, scores, samples, measures and records with.

Each file is hashed as bytes with line endings normalised (a CRLF checkout hashes like an LF one); the fingerprint
is the sha256 of the sorted `path sha256` lines, shown by its first 12 hex digits. Paths are relative to the
repository (a plugin's to the folder holding its package). Hashes are computed once per process and file: a
long-running sweep keeps the fingerprint of the code it loaded.

The fingerprint is not part of a run's id (committed stores keep theirs). The runner compares it with a finished
record's (`execution.reuse`), a checkpoint's and a progress file's; `changed_files` names what differs. Nothing
here imports torch: reports label records without loading the methods.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
from functools import cache
from pathlib import Path
from typing import Any, Optional

from .record import Code

REPO = Path(__file__).resolve().parents[1]

# the code every run goes through whatever its method, space and truth: training loops and optimizers, data loading
# and splits, parameter/FLOP counting, device and autocast setup, multi-exit ranking values, the run's phases and
# record (runner), rank correlations and their bootstrap, the shared sample, paired tests, anytime scoring and cost
# accounting. Reports, stores and configuration are not here: they do not change what a run measures (a config
# default that does changes the run's id instead).
SHARED_FILES = (
    "oneshot_bench/training.py",
    "oneshot_bench/data.py",
    "oneshot_bench/measure.py",
    "oneshot_bench/device.py",
    "oneshot_bench/exits.py",
    "evaluators/runner.py",
    "evaluators/ranking.py",
    "evaluators/sample.py",
    "evaluators/paired.py",
    "evaluators/anytime.py",
    "evaluators/cost.py",
)
SHORT = 12  # hex digits of a fingerprint in messages and file names


def short(fingerprint: str) -> str:
    """A fingerprint as messages and file names show it."""
    return fingerprint[:SHORT]


def file_sha256(path: Path) -> str:
    """sha256 of a source file with CRLF and CR line endings read as LF; cached per process."""
    path = Path(path)
    if path not in _HASHES:
        data = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        _HASHES[path] = hashlib.sha256(data).hexdigest()
    return _HASHES[path]


_HASHES: dict[Path, str] = {}


def combine(files: dict[str, str]) -> str:
    """The fingerprint of a set of file hashes."""
    lines = "".join(f"{path} {sha}\n" for path, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def code_fingerprint(*components: object) -> Code:
    """The fingerprint of the shared code and of the given components' (method, space, truth source: instances or
    classes) modules."""
    paths = [REPO / name for name in SHARED_FILES]
    for component in components:
        paths += component_files(component if isinstance(component, type) else type(component))
    files = {display_path(p): file_sha256(p) for p in dict.fromkeys(paths)}
    return Code(fingerprint=combine(files), files=files)


def changed_files(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The files that differ between two fingerprints' file hashes: changed, added (`+path`) or removed (`-path`)."""
    changed = [p for p in sorted(set(old) & set(new)) if old[p] != new[p]]
    return changed + [f"+{p}" for p in sorted(set(new) - set(old))] + [f"-{p}" for p in sorted(set(old) - set(new))]


def changed_on_disk(files: dict[str, str]) -> list[str]:
    """Which of a record's files differ from this checkout's (read by path, nothing imported; `-path`: gone).
    Cheaper than the run's full fingerprint, so it cannot see a module the code newly imports: for labels."""
    out = []
    for name, sha in sorted(files.items()):
        path = resolve_path(name)
        if path is None:
            out.append(f"-{name}")
        elif file_sha256(path) != sha:
            out.append(name)
    return out


def short_commit(commit: str) -> str:
    """`abc1234` or `abc1234+dirty`: a record's git commit as messages show it."""
    sha, plus, rest = (commit or "unknown").partition("+")
    return sha[:7] + plus + rest


def difference(made_by: Optional[Code], commit: str, current: Code) -> Optional[str]:
    """How the code that made a record (its `code` and git commit) differs from `current`, in words; None when it is
    the same code."""
    if made_by is None:
        return f"it has no code fingerprint (a legacy record, commit {short_commit(commit)})"
    if made_by.fingerprint == current.fingerprint:
        return None
    return (f"it was made by other code (fingerprint {short(made_by.fingerprint)}, commit {short_commit(commit)}; "
            f"changed since: {describe_changes(changed_files(made_by.files, current.files))})")


def describe_changes(changed: list[str], limit: int = 5) -> str:
    """`a.py, b.py and 3 more`: the files named in a one-line message."""
    if not changed:
        return "no file differs, only the set of files"
    shown = ", ".join(changed[:limit])
    return shown + (f" and {len(changed) - limit} more" if len(changed) > limit else "")


# ---- which files a component is made of ------------------------------------------------------------------------

@cache
def component_files(cls: type) -> tuple[Path, ...]:
    """The source files of a method, space or truth class: its MRO's modules kept as the module docstring says, and
    the modules they import from the same component packages, transitively."""
    owner = _package_root(sys.modules[cls.__module__])
    roots = [sys.modules[c.__module__] for c in cls.__mro__ if c.__module__ in sys.modules]
    roots = [m for m in roots if _source(m) is not None and _is_own(_source(m), owner)]
    packages = {_package_of(m) for m in roots}
    seen: dict[str, Path] = {}
    todo = [(m.__name__, _source(m)) for m in roots]
    while todo:
        name, path = todo.pop()
        if name in seen or path is None:
            continue
        seen[name] = path
        for imported in _imports(name, path, _is_package(path)):
            if any(imported == p or imported.startswith(p + ".") for p in packages) and imported not in seen:
                todo.append((imported, _find(imported)))
    return tuple(sorted(seen.values()))


def _source(module: Any) -> Optional[Path]:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file and file.endswith(".py") else None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _package_of(module: Any) -> str:
    """The package a module belongs to (a top-level module: itself)."""
    return module.__package__ or module.__name__


def _package_root(module: Any) -> Optional[Path]:
    """The folder of the module's top-level package (a plugin's code lies in it), or None for a lone module."""
    top = sys.modules.get(module.__name__.split(".")[0])
    path = _source(top) if top is not None else None
    return path.parent if path is not None and _is_package(path) else None


def _in_repo(path: Path) -> bool:
    """Inside this repository, but not in a virtual environment or other hidden folder it may hold."""
    if not path.is_relative_to(REPO):
        return False
    parts = path.relative_to(REPO).parts
    return not any(part.startswith(".") or part == "site-packages" for part in parts)


def _is_own(path: Path, owner: Optional[Path]) -> bool:
    return _in_repo(path) or (owner is not None and path.is_relative_to(owner))


@cache
def _imports(module: str, path: Path, is_package: bool) -> tuple[str, ...]:
    """Absolute names of the modules (and, for `from x import y`, the candidates x.y) a source file imports."""
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            try:
                base = importlib.util.resolve_name(base, package) if node.level else base
            except (ImportError, ValueError):
                continue
            names += [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return tuple(dict.fromkeys(names))


def _find(name: str) -> Optional[Path]:
    """The source file of a module name, or None when the name is not a module (an imported function or class)."""
    module = sys.modules.get(name)
    if module is not None:
        return _source(module)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # `pkg.module.function`: its parent is not a package
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin).resolve() if origin and origin.endswith(".py") else None


def display_path(path: Path) -> str:
    """A file's name in a fingerprint: relative to the repository, or for a plugin to the folder of its package."""
    path = Path(path).resolve()
    if _in_repo(path):
        return path.relative_to(REPO).as_posix()
    for parent in path.parents:  # the outermost package folder (one with an __init__.py) holding the file
        if not (parent / "__init__.py").is_file():
            return path.relative_to(parent).as_posix()
    return path.as_posix()


def resolve_path(name: str) -> Optional[Path]:
    """The file a fingerprint's path names in this checkout (a plugin's through its importable package), or None.
    Only a relative `.py` path inside the repository or the package is looked at: a record is data, and a
    hand-edited one must not make a report read other files."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts or not name.endswith(".py"):
        return None
    path = (REPO / name).resolve()
    if _in_repo(path) and path.is_file():
        return path
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: found, not imported
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(list(spec.submodule_search_locations)[0]).resolve()
    path = (package.parent / name).resolve()
    return path if path.is_relative_to(package) and path.is_file() else None
