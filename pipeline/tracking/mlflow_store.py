"""MLflow through its client (no global active run, so parallel jobs and threads cannot mix their runs up).

A folder (the default runs/mlruns) holds an SQLite store, mlflow.db, and the artifacts beside it: MLflow's own
local default since its file store went into maintenance; `mlflow ui --backend-store-uri sqlite:///runs/mlruns/
mlflow.db` shows it with no server. Any other tracking URI (http://, databricks) is used as given.
"""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

BATCH = 100  # MLflow takes at most 100 params, and 1000 metrics, in one call
VALUE_CHARS = 6000  # the longest param value MLflow keeps


def _client(uri: str):
    """The client of a tracking URI, or of a folder (its SQLite store); and the folder, None for a URI."""
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # table creation and migrations say so at INFO on every new store
        logging.getLogger(name).setLevel(logging.WARNING)
    folder = None if "://" in uri or uri.startswith(("databricks", "file:")) else Path(uri)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri), folder


def _fix(uri: str) -> str:
    if uri.startswith("file:"):
        return ("MLflow 3 makes no new file stores: set tracking.uri to a folder (an SQLite store is made in it, e.g. "
                "runs/mlruns) or to sqlite:///PATH/mlflow.db")
    if uri.startswith(("http:", "https:")):
        return "start the server or fix tracking.uri, or set tracking.kind: none"
    return "fix tracking.uri, or set tracking.kind: none"


def _reason(text: str) -> str:
    """MLflow's reason in a few words: its first sentence, and a refused connection said as such."""
    if "NewConnectionError" in text or "Connection refused" in text:
        return "no server answers there"
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0][:200]


def store_problem(uri: str, project: str) -> str | None:
    """Why the store at `uri` cannot be opened now (MLflow's own reason and the fix), or None. A server that does not
    answer fails at once: MLflow would otherwise retry for minutes."""
    from pipeline.outcome import first_line

    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    before = {k: os.environ.get(k) for k in quick}
    os.environ.update({k: v for k, v in quick.items() if before[k] is None})
    try:
        _client(uri)[0].get_experiment_by_name(project)
    except Exception as e:  # noqa: BLE001 - any failure to open the store is the answer
        return f"MLflow cannot open {uri} ({_reason(first_line(e))}); {_fix(uri)}"
    finally:
        for k in quick:
            if before[k] is None:
                os.environ.pop(k, None)
    return None


class MlflowStore:
    def __init__(self, uri: str, project: str, parent: str | None):
        self.client, folder = _client(uri)
        self.parent, self.run = parent, None
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
