"""Hydra callback: create the Optuna study (and its storage schema) once, before the Optuna sweeper starts.

Several sweep workers started at the same moment against a fresh storage race on creating the schema and the study
(SQLite: "table already exists"; PostgreSQL: a unique-key violation) and all but one crash. This callback runs in
`on_multirun_start`, before the sweeper opens the storage, and retries those races with a random back-off; once the
study exists, every worker's sweeper only loads it.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("oneshot_bench")


def create_study_once(storage: str, study_name: str, direction: str, attempts: int = 8) -> None:
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            optuna.create_study(storage=storage, study_name=study_name, direction=direction, load_if_exists=True)
            return
        except (IntegrityError, OperationalError, ProgrammingError, optuna.exceptions.DuplicatedStudyError) as e:
            if attempt == attempts - 1:
                raise
            log.info("study %s: storage busy being created by another worker (%s); retrying", study_name,
                     type(e).__name__)
            time.sleep(random.uniform(0.2, 1.0) * (attempt + 1))


class CreateOptunaStudy(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if "optuna" not in str(sweeper.get("_target_", "")).lower() or not sweeper.get("storage"):
            return
        direction = sweeper.get("direction", "minimize")
        if not isinstance(direction, str):
            return  # multi-objective studies: left to the sweeper
        create_study_once(str(sweeper.storage), str(sweeper.study_name), direction)
