"""MLflow through its client (no global active run, so parallel jobs and threads cannot mix their runs up).

A folder (the default runs/mlruns) holds an SQLite store, mlflow.db, and the artifacts beside it: MLflow's own
local default since its file store went into maintenance; `mlflow ui --backend-store-uri sqlite:///runs/mlruns/
mlflow.db` shows it with no server. Any other tracking URI (http://, databricks) is used as given.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

BATCH = 100  # MLflow takes at most 100 params, and 1000 metrics, in one call
VALUE_CHARS = 6000  # the longest param value MLflow keeps


class MlflowStore:
    def __init__(self, uri: str, project: str, parent: str | None):
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # table creation and migrations say so at INFO on every new store
            logging.getLogger(name).setLevel(logging.WARNING)
        folder = None if "://" in uri or uri.startswith(("databricks", "file:")) else Path(uri)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{folder / 'mlflow.db'}"
        self.client, self.parent, self.run = MlflowClient(tracking_uri=uri), parent, None
        found = self.client.get_experiment_by_name(project)
        if found is not None:
            self.experiment = found.experiment_id
        else:
            where = (folder / "artifacts").as_uri() if folder is not None else None
            self.experiment = self.client.create_experiment(project, artifact_location=where)

    def start(self, run_id: str | None, name: str, job: str, params: dict, tags: dict) -> str:
        from mlflow.entities import Param

        if run_id:
            self.run = run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {**tags, "maskfold.job": job, **({"mlflow.parentRunId": self.parent} if self.parent else {})}
        self.run = self.client.create_run(self.experiment, run_name=name, tags=tags).info.run_id
        items = [Param(k, str(v)[:VALUE_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run, params=items[i:i + BATCH])
        return self.run

    def _metrics(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in values.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run, metrics=items[i:i + BATCH])

    def history(self, row: dict, step: int) -> None:
        self._metrics(row, step)

    def summary(self, figures: dict) -> None:
        self._metrics(figures, 0)

    def tag(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run, tags=[RunTag(k, str(v)[:VALUE_CHARS]) for k, v in tags.items()])

    def upload(self, files: list[Path], folder: str) -> None:
        for f in files:
            self.client.log_artifact(self.run, str(f), artifact_path=folder or None)

    def end(self) -> None:
        self.client.set_terminated(self.run)
