"""The records a training job writes beside its model: done.json (a fold pair's or a refit's) and the metadata of
best.pt and last.pt. One dataclass per file, so every reader sees the same fields under the same meaning.

Each record carries a format `version`. A file written before records had one reads as version 1: its fields are
the same except last.pt's best_epoch, which counted from 0 (-1 for none) where every record now counts epochs
from 1, as the logs print them (0 for none), and a refit's fold, which was "full" where it is now None. A file
that lacks a field, or is not a record at all, raises RecordError naming the file: the state of its job
(pipeline.train.state) treats it as stale and trains it again. A file the disk cannot read (an I/O error,
permissions) raises storage.Unreadable instead: that is no verdict on the job, whose files stay.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.storage import Unreadable

VERSION = 2


class RecordError(ValueError):
    """A record file that cannot be read as its record: damaged, or missing a field."""


def _build(cls, fields: dict, source):
    """`cls` from a file's fields: unknown keys (an older or newer writer's extras) are left out, a missing one is an
    error that names the file."""
    if not isinstance(fields, dict):
        raise RecordError(f"{source}: not a {cls.__name__} record")
    names = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in fields.items() if k in names}
    known.setdefault("version", 1)  # written before records had a version
    try:
        return cls(**known)
    except TypeError as e:  # a missing field
        raise RecordError(f"{source}: not a {cls.__name__} record of version {known['version']} ({e})") from None


@dataclass(kw_only=True)
class Record:
    """A JSON file's record: written whole by to_json, read back by from_json (or read, from its path) into the same
    fields. A subclass whose older files differ says how in `upgrade`."""
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def upgrade(cls, fields: dict) -> dict:
        """An older version's fields as this version has them (version 1: written before records had a version)."""
        return fields

    @classmethod
    def from_json(cls, text: str, source=None):
        try:
            fields = json.loads(text)
        except ValueError:
            raise RecordError(f"{source or cls.__name__}: not JSON") from None
        if isinstance(fields, dict):
            fields = cls.upgrade({"version": 1, **fields})
        return _build(cls, fields, source or cls.__name__)

    @classmethod
    def read(cls, path: Path):
        """The record in `path`, or None when there is no such file; RecordError when it is not this record."""
        try:
            text = Path(path).read_bytes().decode()
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise RecordError(f"{path}: not text") from None
        except OSError as e:  # the disk's fault, not the file's: the job must not be judged stale for it
            raise Unreadable(path, e.strerror or type(e).__name__) from e
        return cls.from_json(text, path)

    @classmethod
    def read_current(cls, path: Path, version: int):
        """The record in `path` where it is one of `version`; None where there is none, or it is damaged or of
        another version (whoever reads it makes it anew)."""
        try:
            record = cls.read(path)
        except RecordError:
            return None
        return record if record is not None and record.version == version else None


@dataclass(kw_only=True)
class Done(Record):
    """What a finished job's done.json holds in common: the identity that makes its model current (its settings'
    hash, the digest of the photos, labels and folds, the TTA and eval set its predictions are for) and where and
    how it ran."""
    hash: str
    data: str | None
    tta: list[str]
    eval: str | None
    test: bool  # test.npz was written (False for a train-only data set)
    backbone: str
    epochs_run: int
    host: str | None = None
    device: str | None = None
    train_seconds: float = 0.0
    provenance: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class PairDone(Done):
    """A fold pair's done.json."""
    fold: int
    best_epoch: int  # 1-based
    val_f1: float  # the best epoch's validation macro F1, without TTA
    oof_f1_tta: float  # the OOF predictions' macro F1, with the config's TTA


@dataclass(kw_only=True)
class RefitDone(Done):
    """A backbone's full-data refit's done.json: it validates nothing, so its model is its last epoch's."""
    epochs: int
    photos: int  # how many photos it trained on

    @property
    def best_epoch(self) -> int:
        return self.epochs


def _checkpoint_record(cls, ckpt, source):
    if not isinstance(ckpt, dict):
        raise RecordError(f"{source}: not a checkpoint")
    return _build(cls, ckpt, source)


@dataclass(kw_only=True)
class BestMeta:
    """best.pt beside its "model" weights: enough to rebuild and normalise the model (pipeline.model.models)."""
    backbone: dict  # the BackboneConfig, as a dict
    config: dict  # the resolved config the model was trained under
    mean: tuple | list
    std: tuple | list
    img_size: tuple | list
    epoch: int  # the 1-based epoch these weights are from
    f1: float  # its validation macro F1 (-1 for a refit, which validates nothing)
    hash: str
    data: str | None
    fold: int | None  # None for a refit
    version: int = VERSION

    def to_checkpoint(self, model: dict) -> dict:
        return {"model": model, **dataclasses.asdict(self)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict, source=None) -> BestMeta:
        if isinstance(ckpt, dict) and ckpt.get("fold") == "full":  # version 1 named a refit's fold "full"
            ckpt = {**ckpt, "fold": None}
        return _checkpoint_record(cls, ckpt, source or cls.__name__)


@dataclass(kw_only=True)
class LastMeta:
    """last.pt beside the model, optimiser, scheduler, scaler and EMA states: where training stands, so that a rerun
    continues to the same bits."""
    epoch: int  # epochs completed
    best_f1: float
    best_epoch: int  # 1-based; 0 while no epoch has been the best
    updates: int  # optimiser steps so far
    history: list  # metrics.csv's rows so far
    rng: dict
    config: dict
    hash: str
    data: str | None
    version: int = VERSION

    def to_checkpoint(self, states: dict) -> dict:
        return {**states, **dataclasses.asdict(self)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict, source=None) -> LastMeta:
        meta = _checkpoint_record(cls, ckpt, source or cls.__name__)
        if meta.version == 1:  # counted from 0, -1 for none
            meta.best_epoch += 1
        return meta
