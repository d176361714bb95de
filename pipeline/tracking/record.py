"""<run_dir>/tracking.json: which tracked run a maskfold run logs to, and which child each pair and refit has.

Read and written under <run_dir>/.tracking.lock, so parallel jobs never make two runs for one. The record is kept
while the tracking settings stay the same (kind, uri as written, project); other settings start a new tracked run.
A child is keyed by its pair and identity (the pair hash), so a resumed pair goes on in its child and a pair
retrained under other settings gets a new one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.io import atomic_write_text, file_lock
from pipeline.layout import REFIT, tracking_json, tracking_lock
from pipeline.records import Record

VERSION = 1
MLFLOW_FOLDER = "runs/mlruns"  # the project's local store when tracking.uri is not set: `mlflow ui` reads it


@dataclass(kw_only=True)
class TrackingRecord(Record):
    kind: str
    setting: str | None  # tracking.uri as written
    uri: str  # where it resolved (an absolute folder or a URI), used by every process of the run
    project: str
    run: str  # the run's own tracked run
    group: str  # what groups the children (W&B); the run's name
    children: dict[str, str] = field(default_factory=dict)  # "<backbone>/<fold<k>|full>@<identity>" -> run id
    version: int = VERSION

    def matches(self, cfg) -> bool:
        t = cfg.tracking
        return (self.kind, self.setting, self.project) == (t.kind, t.uri, t.project)


def resolve_uri(cfg) -> str:
    """A folder made absolute (so workers elsewhere find it), or a URI as given."""
    t = cfg.tracking
    uri = t.uri or (MLFLOW_FOLDER if t.kind == "mlflow" else "")
    if not uri or "://" in uri or uri.startswith(("databricks", "file:")):
        return uri
    return str(Path(uri).resolve())


def _store(kind: str, uri: str, project: str, group: str, parent: str | None):
    if kind == "mlflow":
        from pipeline.tracking.mlflow_store import MlflowStore

        return MlflowStore(uri, project, parent)
    from pipeline.tracking.wandb_store import WandbStore

    return WandbStore(uri or None, project, group)


def _read(run_dir) -> TrackingRecord | None:
    """The record, None without one of this version (a new tracked run is made then)."""
    return TrackingRecord.read_current(tracking_json(run_dir), VERSION)


def _new_record(cfg) -> TrackingRecord:
    """A new tracked run for the maskfold run: the resolved config as params."""
    from pipeline.tracking import flat

    uri, name = resolve_uri(cfg), Path(cfg.run_dir).name
    store = _store(cfg.tracking.kind, uri, cfg.tracking.project, name, None)
    run = store.start(None, name, "run", flat(cfg.to_dict()), {"maskfold.run_dir": str(Path(cfg.run_dir).resolve())})
    store.end()
    return TrackingRecord(kind=cfg.tracking.kind, setting=cfg.tracking.uri, uri=uri, project=cfg.tracking.project,
                          run=run, group=name)


def open_record(cfg) -> TrackingRecord:
    """The run's record, made (with its tracked run) when there is none for these tracking settings."""
    with file_lock(tracking_lock(cfg.run_dir), wait=True):
        record = _read(cfg.run_dir)
        if record is None or not record.matches(cfg):
            record = _new_record(cfg)
            atomic_write_text(tracking_json(cfg.run_dir), record.to_json())
        return record


def run_store(cfg):
    """The run's own tracked run, started again to take more figures."""
    record = open_record(cfg)
    store = _store(record.kind, record.uri, record.project, record.group, None)
    store.start(record.run, record.group, "run", {}, {})
    return store


def child_store(cfg, backbone: str, name: str, identity: str, params: dict):
    """A pair's (name fold<k>) or refit's (name full) child run, made on first use, else started again."""
    record = open_record(cfg)
    key = f"{backbone}/{name}@{identity}"
    store = _store(record.kind, record.uri, record.project, record.group, record.run)
    job = "refit" if name == REFIT else "pair"
    tags = {"maskfold.backbone": backbone, "maskfold.pair": name, "maskfold.hash": identity}
    with file_lock(tracking_lock(cfg.run_dir), wait=True):
        record = _read(cfg.run_dir) or record
        known = record.children.get(key)
        run = store.start(known, f"{backbone} {name}", job, {} if known else params, tags)
        if not known:
            record.children[key] = run
            atomic_write_text(tracking_json(cfg.run_dir), record.to_json())
    return store
