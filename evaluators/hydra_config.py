"""Hydra's view of the typed configuration: RunConfig as the schema of conf/config.yaml, and each registered
method's and truth source's parameter dataclass as the schema of its group file, so the composed config carries
every default (`python run.py --cfg job` shows them), Hydra type-checks overrides, and `method.params.<name>=`
overrides a parameter without repeating its default in YAML. A method's YAML (conf/method/<name>.yaml) lists
`/schema/method/<name>@_here_` first in its defaults; a truth source's likewise."""
from __future__ import annotations

from hydra.core.config_store import ConfigStore

from methods import METHODS
from oneshot_bench.config import RunConfig
from search_spaces import SPACES

from .truth import TRUTHS

SCHEMA_NAME = "config_schema"


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name=SCHEMA_NAME, node=RunConfig)
    for name in METHODS.names():
        cs.store(group="schema/method", name=name, node={"name": name, "params": METHODS.get(name).Hparams})
    for name in SPACES.names():
        if SPACES.get(name).Params is not None:
            cs.store(group="schema/space", name=name, node={"name": name, "params": SPACES.get(name).Params})
    for name in TRUTHS.names():
        cs.store(group="schema/truth", name=name, node={"name": name, "params": TRUTHS.get(name).Params})
