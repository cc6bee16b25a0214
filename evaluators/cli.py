"""Command-line overrides checked before Hydra composes them, so that every bad input gets the project's one
error style (a message naming the key, what is wrong and the valid choices; exit code 2) instead of Hydra's.

Checks: a group choice (`method=nope`) names an existing conf/<group>/<name>.yaml; a key (`sede=1`,
`budget.epochz=3`) exists in the typed configuration (free-form dicts such as `method.params` are validated later
by the method's own dataclass; a per-space dict such as `budget.net_by_space` takes only registered space names);
a plain value has the key's type (`seed=abc`; `seed=1e3` is told to write `seed=1000`, `key=null` on a key that
needs a value is told its type and default); a deletion (`~method`, `~seed`) is refused except for an optional
group (`~sweep`, `~transfer`), since the schema's default would silently take the deleted choice's place.
Hydra's own keys pass through.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from oneshot_bench.config import RunConfig
from oneshot_bench.errors import ConfigError

# dict fields whose keys are free and whose values are checked elsewhere (a method's or a source's dataclass)
FREE_PARAMS = ("method.params", "space.params", "truth.params")
# dict fields keyed by a search space's name (a per-space network size)
SPACE_KEYED = ("budget.net_by_space", "budget.final_net_by_space")


def override_args(argv: list[str]) -> list[str]:
    """The Hydra overrides among command-line arguments (key=value, +key=value, ~key), not the flags."""
    return [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]


def check_overrides(args: list[str], conf_dir: Path) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException as e:
        raise ConfigError(parse_error(args, e)) from None
    groups = sorted(p.name for p in conf_dir.iterdir() if p.is_dir())
    for o in overrides:
        key = o.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        if o.is_delete():
            check_deletion(key, groups, conf_dir)
        check_enumerable(o)
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
            _check_value(key, o.value(), lambda key=key: composed_default(key, args, conf_dir))


def check_deletion(key: str, groups: list[str], conf_dir: Path) -> None:
    """`~key` deletes a group choice or a setting, and the typed schema then fills the hole with its own default:
    `method=random ~method` runs spos, `~data data=cifar10` runs on digits, `~seed` runs seed 0, with no word. Only
    an optional group (absent unless selected: `+sweep=`, `+transfer=`) and keys inside it may be deleted, and an
    entry of a free dict: a method's (space's, truth's) parameter, whose own dataclass default then applies
    (`~method.params.arch_lr`), or a per-space network (`~budget.net_by_space.nb101`: budget.net then applies)."""
    group = key.split(".")[0]
    if group in OPTIONAL_GROUPS:
        return
    if any(key.startswith(f"{parent}.") for parent in (*FREE_PARAMS, *SPACE_KEYED)):
        return
    if key in groups:
        valid = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
        raise ConfigError(f"~{key} deletes the {key} group, which every run needs: its schema default would "
                          f"silently run in place of your choice. Drop ~{key} and choose one with {key}=<name> "
                          f"({', '.join(valid)}).")
    tp = _field_type(key, groups)  # (an unknown key is refused as such)
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        raise ConfigError(f"~{key} deletes the {key} settings, which silently puts their schema defaults in place "
                          f"of the configured values; drop ~{key} and set the ones you want with "
                          f"{key}.<key>=<value>.")
    raise ConfigError(f"~{key} deletes a setting, which silently puts its schema default in place of your value; "
                      f"drop ~{key} and set the value you want with {key}=<value> (or leave {key} out for its "
                      f"default).")


def parse_error(args: list[str], error: Exception) -> str:
    """The message for a command line Hydra's grammar refuses: the argument it cannot lex, and the fix: for a value
    with a control character (a newline, a tab) removing it, for a non-ASCII value (`budget.name=é`: the grammar's
    unquoted values are ASCII) quoting it, else quoting any value with special characters."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    first = str(error).splitlines()[0]
    parser = OverridesParser.create()

    def refused(arg: str) -> bool:
        try:
            parser.parse_overrides([arg])
        except HydraException:
            return True
        return False

    culprit = next((a for a in args if refused(a)), None)
    if culprit is None:
        return f"cannot parse the command line: {first}"
    key, _, value = culprit.partition("=")
    if any(not c.isprintable() for c in culprit):
        return (f"cannot parse {culprit!r}: {key}'s value holds a control character (a newline or tab, shown "
                f"escaped); no setting takes one: remove it.")
    if not culprit.isascii():
        return (f"cannot parse {culprit!r}: an unquoted value must be ASCII; quote it (in the shell: "
                f"'{key}=\"{value}\"') or use ASCII characters.")
    return (f"cannot parse {culprit!r} ({first}); quote a value with special characters (in the shell: "
            f"'{key}=\"{value}\"').")


def check_enumerable(override: Any) -> None:
    """A sweep override on the command line (`-m key=a,b` or `key=range(...)`) lists its runs; interval(...) names
    no runs (it is a search dimension of a +sweep study), so Hydra cannot enumerate it: refused, naming the key."""
    if override.is_sweep_override() and not override.is_discrete_sweep():
        key = override.get_key_element()
        raise ConfigError(f"{override.input_line}: a grid of runs (-m) needs a list of values "
                          f"({key}=a,b,c) or range(start, stop[, step]); interval(...) cannot be enumerated. To "
                          f"search an interval, use a study: +sweep=<method> "
                          f"'++sweep.params={{{key}: \"interval(lo, hi)\"}}'.")


def grid_runs(args: list[str]) -> list[list[str]]:
    """The runs of a multirun (`-m`): one override list per combination of the sweep overrides' values (a, b and
    range(...)), in Hydra's order. A sweep that cannot be enumerated (interval) is a ConfigError."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    options = []
    for arg, o in zip(args, OverridesParser.create().parse_overrides(args), strict=True):
        check_enumerable(o)
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
                cfg = composed(others)
                node = OmegaConf_select(cfg, parent)
            except (HydraException, OmegaConfBaseException):
                raise ConfigError(f"unknown key {key!r}.") from None
            if node is not None and len(node) == 0 and parent in FREE_PARAMS:
                raise ConfigError(no_params_message(key, parent, cfg)) from None
            keyed = next((k for k in SPACE_KEYED if key == k or key.startswith(k + ".")), None)
            if keyed:
                raise ConfigError(no_space_entry_message(key, keyed, cfg)) from None
            valid = f" Valid keys of {parent}: {', '.join(sorted(node))}." if node is not None else ""
            raise ConfigError(f"unknown key {key!r}.{valid}") from None
        key = getattr(error, "full_key", None)
        if key and value_of(args, key, missing=True) is None:  # `key=null` on a key that needs a value
            raise ConfigError(null_message(key, composed_default(key, args, conf_dir))) from None
        if key and "could not be converted to Integer" in message:
            hint = integer_hint(key, value_of(args, key))
            if hint:
                raise ConfigError(f"invalid value for {key}: {hint}") from None
        raise ConfigError(f"invalid configuration{f' at {key}' if key else ''}: {message}") from None


def value_of(args: list[str], key: str, missing: Any = None) -> Any:
    """The value the command line gives `key` (`key=v`, `+key=v`, `++key=v`), parsed as Hydra does; `missing`
    when it gives none."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for o in reversed(OverridesParser.create().parse_overrides(args)):
        if o.key_or_group == key and not o.is_delete() and not o.is_sweep_override():
            return o.value()
    return missing


def composed_default(key: str, args: list[str], conf_dir: Path) -> Any:
    """What `key` is without the command line's own setting of it (the group file's or schema's default); None
    when that cannot be composed."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    others = [a for a in args if a.lstrip("+~").split("=", 1)[0] != key]
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return OmegaConf_select(compose("config", overrides=others), key)
    except (HydraException, OmegaConfBaseException):
        return None


def null_message(key: str, default: Any) -> str:
    """`key=null` where the key needs a value: its type, its default, and how to get the default back."""
    import enum

    if isinstance(default, enum.Enum):
        kind, default = f"one of {', '.join(str(m.value) for m in type(default))}", default.value
    elif default is None:
        kind = "a value"
    else:
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
            type(default), type(default).__name__)
    shown = "true" if default is True else "false" if default is False else default
    default_text = f"; its default here is {shown}" if default is not None else ""
    example = f", e.g. {key}={shown}" if default is not None else ""
    return (f"{key}=null is not allowed: {key} needs {kind}{default_text}. Drop the {key}=null override to keep the "
            f"default, or give a value{example}.")


def integer_hint(key: str, value: Any) -> Optional[str]:
    """For an integer key given a float: `seed=1e3` is 1000.0 to Hydra's parser; say to write it as an integer."""
    if isinstance(value, float) and value.is_integer():
        return (f"{value!r} is a float, and {key} takes an integer; write it without a decimal point or exponent: "
                f"{key}={int(value)}.")
    if isinstance(value, float):
        return f"{value!r} is not a whole number, and {key} takes an integer, e.g. {key}={round(value)}."
    return None


def no_params_message(key: str, parent: str, cfg: Any) -> str:
    """`key` under a free params dict (method.params, space.params, truth.params) that is empty in the composed
    config: the chosen method or space has no parameters; with truth=auto no source is chosen yet, so its
    parameters belong to none (the space's default source takes them once named)."""
    import dataclasses

    from evaluators.truth import TRUTHS, auto_truth_name

    group = parent.split(".")[0]
    name = cfg[group].name
    value = key.removeprefix(parent + ".")
    if group == "truth" and name == "auto":
        space, default = cfg.space.name, auto_truth_name(cfg.space.name)
        having = [n for n in TRUTHS.names() if value in {f.name for f in dataclasses.fields(TRUTHS.get(n).Params)}
                  and covers(TRUTHS.get(n), space)]
        if default in having:
            return (f"unknown key {key!r}: with truth=auto, truth.params belong to no source. Space {space}'s "
                    f"default source is {default}: name it, e.g. truth={default} {key}=<value>.")
        return (f"unknown key {key!r}: with truth=auto, truth.params belong to no source, and space {space}'s "
                f"default source, {default}, has no parameter {value!r}"
                + (f"; sources with it: {', '.join(having)} (e.g. truth={having[0]} {key}=<value>)." if having
                   else "; drop it."))
    return f"unknown key {key!r}: {group} {name!r} has no parameters; drop {parent}.{value}."


def no_space_entry_message(key: str, keyed: str, cfg: Any) -> str:
    """`key` under a per-space dict (`budget.net_by_space.nb201.channels`) whose budget has no entry for that space
    (or the whole dict replaced): Hydra can change an entry a budget file has, not add one (its values are typed
    NetConfigs). The fix: the budget's network for every space without an entry, or an entry in a budget file."""
    group, field_name = keyed.split(".")
    entries = sorted(OmegaConf_select(cfg, keyed) or {})
    rest = key.removeprefix(keyed + ".") if key != keyed else ""
    space, _, setting = rest.partition(".")
    fallback = f"{group}.{field_name.removesuffix('_by_space')}"
    example = f"{fallback}.{setting or 'channels'}=<value>"
    target = f"an entry for {space}" if key != keyed and space else "new entries"
    return (f"cannot set {key}: budget {cfg.budget.name} has {keyed} entries for "
            f"{', '.join(entries) or 'no space'}, and the command line can change only those, not add "
            f"{target}. Set {example} (the network of every space without an entry), or add the entry under "
            f"{field_name} in conf/budget/<name>.yaml.")


def covers(source: Any, space: str) -> bool:
    """Whether a ground-truth source covers the space (with its default parameters)."""
    from search_spaces import get_space

    return source.unsupported_reason(get_space(space)) is None


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
            if ".".join(walked) in SPACE_KEYED:
                check_space_key(".".join(walked), part, key)
            tp = typing.get_args(tp)[1]
        else:
            raise ConfigError(f"unknown key {key!r}: {'.'.join(walked)} is a single value, not a group of keys.")
        walked.append(part)
        if typing.get_origin(tp) is typing.Union:  # Optional[X] -> X
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def check_space_key(parent: str, space: str, key: str) -> None:
    """A key of a per-space dict (`budget.net_by_space.<space>`) names a registered search space."""
    from search_spaces import SPACES

    names = SPACES.names()
    if space not in names:
        raise ConfigError(f"unknown key {key!r}: {space!r} is not a search space; {parent} takes one entry per "
                          f"space: {', '.join(names)}.")


def _check_value(key: str, value: Any, default: Callable[[], Any]) -> None:
    """Merge the single override into the typed schema: a value of the wrong type fails here, naming the key (for
    `key=null` on a key that needs a value, with its type and its default, `default()`)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    try:
        OmegaConf.merge(OmegaConf.structured(RunConfig), nested)
    except OmegaConfBaseException as e:
        if value is None:
            raise ConfigError(null_message(key, default())) from None
        hint = integer_hint(key, value) if "could not be converted to Integer" in str(e) else None
        raise ConfigError(f"invalid value for {key}: {hint or str(e).strip().splitlines()[0]}") from None
