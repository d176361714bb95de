"""Tracking: each run, pair and refit logged to MLflow or Weights & Biases beside its own files (tracking.kind).

One tracked run per maskfold run directory holds the resolved config, the OOF figures of train-all and the
ensemble's figures and report; one child per (backbone, fold) pair and per refit holds that pair's settings as flat
params, its hash and provenance as tags, every epoch's row of metrics.csv as it is written, and its final figures.
Which runs these are is kept in <run_dir>/tracking.json (pipeline.tracking.record), so every command and every
process of a run (parallel jobs, Ray workers that see the run directory) logs to the same ones, and a resumed pair
goes on in its own child.

The trainer and the ensemble see only the small interface below: a Tracker (epoch, done) per pair, and
track_run for the run's own figures. Tracking never stops a training: the first error becomes one warning line,
and that pair (or that call) goes on unlogged.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Protocol

# kind -> (the module it needs, the extra that installs it); none needs nothing
TRACKERS = {"none": None, "mlflow": ("mlflow", "maskfold[mlflow]"), "wandb": ("wandb", "maskfold[wandb]")}


def missing_extra(kind: str) -> str | None:
    """Why `kind` cannot log here (its package is not installed, with the pip line), or None."""
    need = TRACKERS.get(kind)
    if need is None or importlib.util.find_spec(need[0]) is not None:
        return None
    return f"{need[0]} is not installed: pip install '{need[1]}', or set tracking.kind: none"


def store_problem(cfg) -> str | None:
    """Why the configured store cannot be opened now (the store's own reason and the fix), or None. The commands
    that track ask before any work, so a user who asked for tracking learns it before an hour of training; a store
    that fails later, in the middle of a run, costs one warning line and the training goes on."""
    if cfg.tracking.kind == "none" or missing_extra(cfg.tracking.kind):
        return None
    from pipeline.tracking.record import resolve_uri

    if cfg.tracking.kind == "mlflow":
        from pipeline.tracking.mlflow_store import store_problem as problem
    else:
        from pipeline.tracking.wandb_store import store_problem as problem
    return problem(resolve_uri(cfg), cfg.tracking.project)


class Tracker(Protocol):
    """What a trainer tells its pair's tracked run: each epoch's metrics.csv row, then its done.json record."""

    def epoch(self, row: dict) -> None: ...

    def done(self, record: dict, folder: Path) -> None: ...


class NoTracker:
    """tracking.kind: none."""

    def epoch(self, row: dict) -> None:
        pass

    def done(self, record: dict, folder: Path) -> None:
        pass


def flat(d: dict, prefix: str = "") -> dict:
    """A nested config as dotted keys (`train.mix.prob`, `backbones.0.lr`), the form MLflow params and W&B take."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flat(x, f"{key}.{i}."))
        else:
            out[key] = v
    return out


def numbers(record: dict) -> dict:
    """The numeric fields of a record (scores, epochs, seconds): what becomes a run's final figures. The record's
    format version and the fold number are labels, not figures: they go with the tags."""
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("version", "fold")}


def describe(record: dict) -> dict:
    """The other fields of a record, provenance flattened: what becomes a run's tags."""
    rest = {k: v for k, v in record.items() if k not in numbers(record)}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat(rest).items()}


class _Guarded:
    """Runs tracking calls until the first error, which becomes one warning line; after it, nothing more. `warned`:
    the warnings its caller has given already (a store that is down gives one line, not one per pair)."""

    def __init__(self, kind: str, log, warned: set | None = None):
        self.kind, self.log, self.broken = kind, log, False
        self.warned = set() if warned is None else warned

    def call(self, fn, *args):
        if self.broken:
            return None
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - tracking must never stop a training
            self.broken = True
            first = (str(e).strip().splitlines() or [""])[0][:200]
            line = f"warning: {self.kind} tracking failed ({type(e).__name__}: {first}); going on without it"
            if line not in self.warned:
                self.warned.add(line)
                self.log(line)
            return None


class PairTracker(_Guarded):
    """One pair's or refit's child run, started at its first epoch (or at done, for a pair only re-predicted)."""

    def __init__(self, cfg, backbone: str, name: str, identity: str, log=print, warned: set | None = None):
        super().__init__(cfg.tracking.kind, log, warned)
        self.cfg, self.backbone, self.name, self.identity, self.store = cfg, backbone, name, identity, None

    def _open(self):
        if self.store is None:
            from dataclasses import asdict

            from pipeline.tracking.record import child_store

            settings = {**self.cfg.to_dict(), "backbones": [asdict(self.cfg.backbone(self.backbone))]}
            self.store = child_store(self.cfg, self.backbone, self.name, self.identity, flat(settings))
        return self.store

    def epoch(self, row: dict) -> None:
        self.call(lambda: self._open().history({k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"])))

    def done(self, record: dict, folder: Path) -> None:
        def finish():
            from pipeline.layout import tracked_files  # here: the config reads this module's names, and stays light

            store = self._open()
            # done.json's val_f1 is the best epoch's: named apart from the per-epoch val_f1 curve it would extend
            store.summary({("best_val_f1" if k == "val_f1" else k): v for k, v in numbers(record).items()})
            store.tag(describe(record))
            store.upload(tracked_files(folder), "")
            store.end()
        self.call(finish)


def pair_tracker(cfg, backbone: str, name: str, identity: str, log=print, warned: set | None = None) -> Tracker:
    """The tracker of one pair (name fold<k>) or refit (name full) whose done.json will carry `identity`."""
    if cfg.tracking.kind == "none":
        return NoTracker()
    return PairTracker(cfg, backbone, name, identity, log, warned)


def open_tracking(cfg, log=print, warned: set | None = None) -> None:
    """Make the run's tracked run now (train-all calls it on the driver, before any job), so that every job finds
    it in tracking.json instead of racing to make it."""
    if cfg.tracking.kind != "none":
        from pipeline.tracking.record import open_record

        _Guarded(cfg.tracking.kind, log, warned).call(open_record, cfg)


def track_run(cfg, figures: dict, files=(), folder: str = "", log=print, warned: set | None = None) -> None:
    """Log final figures (and files, as artifacts under `folder`) to the run's own tracked run."""
    if cfg.tracking.kind == "none":
        return

    def send():
        from pipeline.tracking.record import run_store

        store = run_store(cfg)
        store.summary({k: float(v) for k, v in figures.items() if v is not None})
        store.upload([Path(f) for f in files if Path(f).is_file()], folder)
        store.end()
    _Guarded(cfg.tracking.kind, log, warned).call(send)
