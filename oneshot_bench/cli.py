"""Command-line overrides checked before Hydra composes them, so that every bad input gets the project's one
error style (a message naming the key, what is wrong and the valid choices; exit code 2) instead of Hydra's.

Checks: a group choice (`method=nope`) names an existing conf/<group>/<name>.yaml; a key (`sede=1`,
`budget.epochz=3`) exists in the typed configuration (free-form dicts such as `method.params` are validated later
by the method's own dataclass); a plain value has the key's type (`seed=abc`). Hydra's own keys pass through.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import ConfigError

# dict fields whose keys are free and whose values are checked elsewhere (a method's or a source's dataclass)
FREE_PARAMS = ("method.params", "space.params", "truth.params")


def override_args(argv: list[str]) -> list[str]:
    """The Hydra overrides among command-line arguments (key=value, +key=value, ~key), not the flags."""
    return [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]


def check_overrides(args: list[str], conf_dir: Path) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException as e:
        raise ConfigError(f"cannot parse the command line: {str(e).splitlines()[0]}") from None
    groups = sorted(p.name for p in conf_dir.iterdir() if p.is_dir())
    for o in overrides:
        key = o.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        if key in groups:
            valid = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
            for value in values:
                if not o.is_delete() and str(value) not in valid:
                    raise ConfigError(f"unknown {key} {value!r}. Valid choices: {', '.join(valid)}. Pick one with "
                                      f"`{key}=<name>`.")
            continue
        leaf = _field_type(key, groups)
        if leaf is not None and not o.is_delete() and not o.is_sweep_override():
            _check_value(key, o.value())


def grid_runs(args: list[str]) -> list[list[str]]:
    """The runs of a multirun (`-m`): one override list per combination of the sweep overrides' values (a, b and
    range(...)), in Hydra's order. Non-discrete sweeps (interval) pass through for Hydra to refuse."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    options = []
    for arg, o in zip(args, OverridesParser.create().parse_overrides(args), strict=True):
        if o.is_sweep_override() and o.is_discrete_sweep():
            prefix = arg[:len(arg) - len(arg.lstrip("+~"))]
            options.append([f"{prefix}{o.key_or_group}={v}" for v in o.sweep_string_iterator()])
        else:
            options.append([arg])
    return [list(combo) for combo in itertools.product(*options)]


OPTIONAL_GROUPS = {"sweep": "spos", "transfer": "imagenet_mobile"}  # config groups that are absent unless selected


def check_composes(args: list[str], conf_dir: Path) -> Any:
    """Compose the configuration as Hydra will (one run), turning any composition error into a ConfigError: a
    mistyped or unknown method/truth parameter is named with the valid ones; returns the composed config. Needs
    the schemas registered."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    def composed(overrides: list[str]) -> Any:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose("config", overrides=overrides)

    for group, example in OPTIONAL_GROUPS.items():  # their keys exist only once the group is selected
        keys = [a.lstrip("+~").split("=", 1)[0] for a in args]
        setting = next((k for k in keys if k.startswith(f"{group}.")), None)
        if setting and group not in keys:
            raise ConfigError(f"{setting} sets a key of the {group} group, which this command does not select; add "
                              f"+{group}=<name> first (conf/{group}/), e.g. +{group}={example}.")
    try:
        return composed(args)
    except (HydraException, OmegaConfBaseException) as e:
        error: BaseException = e
        while error.__cause__ is not None:  # the innermost cause says what is wrong
            error = error.__cause__
        message = str(error).strip().splitlines()[0]
        unknown = re.match(r"Could not override '([^']+)'", str(e))
        if unknown and unknown.group(1).startswith("sweep.params"):
            raise ConfigError("sweep.params: `sweep.params={...}` only changes dimensions the sweep file already "
                              "has; add one with ++, e.g. "
                              "'++sweep.params={method.params.<name>: \"choice(a, b)\"}'.") from None
        if unknown:
            key = unknown.group(1)
            parent, _, _ = key.rpartition(".")
            others = [a for a in args if not a.lstrip("+~").startswith(key + "=")]
            try:
                node = OmegaConf_select(composed(others), parent)
                valid = f" Valid keys of {parent}: {', '.join(sorted(node))}." if node is not None else ""
            except (HydraException, OmegaConfBaseException):
                valid = ""
            raise ConfigError(f"unknown key {key!r}.{valid}") from None
        key = getattr(error, "full_key", None)
        raise ConfigError(f"invalid configuration{f' at {key}' if key else ''}: {message}") from None


def OmegaConf_select(cfg: Any, key: str) -> Any:  # noqa: N802 - reads as OmegaConf.select
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key) if key else cfg


def _field_type(key: str, groups: list[str]) -> Any:
    """The declared type at `key` in RunConfig (None inside a free-form dict); ConfigError for an unknown key."""
    if any(key == free or key.startswith(free + ".") for free in FREE_PARAMS):
        return None
    tp: Any = RunConfig
    walked: list[str] = []
    for part in key.split("."):
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                where = f"of {'.'.join(walked)}" if walked else "at the top level"
                extra = f"; or choose a group: {', '.join(g + '=<name>' for g in groups)}" if not walked else ""
                raise ConfigError(f"unknown key {key!r}. Valid keys {where}: {', '.join(sorted(hints))}{extra}.")
            tp = hints[part]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            raise ConfigError(f"unknown key {key!r}: {'.'.join(walked)} is a single value, not a group of keys.")
        walked.append(part)
        if typing.get_origin(tp) is typing.Union:  # Optional[X] -> X
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _check_value(key: str, value: Any) -> None:
    """Merge the single override into the typed schema: a value of the wrong type fails here, naming the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    try:
        OmegaConf.merge(OmegaConf.structured(RunConfig), nested)
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid value for {key}: {str(e).strip().splitlines()[0]}") from None
