"""<run_dir>/ensemble/weights.json: the ensemble's choice, which `maskfold predict` replays to reproduce the
submission and `maskfold compare` reads the honest figure from.

Version 1 (written before the file had a version) may lack what later versions added: the members (a run's own
backbones then), the models the eval set was predicted with (the folds'), the stacker, the age cut and the
submission's own honest figure (the chosen blend's). A file that is not this record is refused, naming it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInput, MissingInput
from pipeline.layout import weights_json
from pipeline.records import Record, RecordError

OWN_RUN = "."  # a member of the run that holds weights.json, found beside it wherever the run is moved


@dataclass(kw_only=True)
class MemberRef:
    """A member as weights.json names it: one backbone of one run, with what predicting with it needs."""
    name: str
    run: str  # OWN_RUN, or another run's absolute path
    backbone: str
    tta: list[str]
    n_splits: int

    def run_dir(self, own: Path) -> Path:
        return Path(own) if self.run == OWN_RUN else Path(self.run)


def own_members(backbones: list[str], tta: list[str], n_splits: int) -> list[MemberRef]:
    """A single run's members: its own backbones."""
    return [MemberRef(name=b, run=OWN_RUN, backbone=b, tta=list(tta), n_splits=n_splits) for b in backbones]


@dataclass(kw_only=True)
class Weights(Record):
    method: str  # the vote: soft or hard
    backbones: list[str]  # the members' names, in blend order
    chosen: str  # the blend used for the submission
    honest_f1: dict[str, float]  # each blend's honest OOF macro F1
    submission_honest_f1: float  # the choice's own honest figure
    members: list[MemberRef]
    weights: list[float]
    offsets: list[float]
    stacker: dict | None = None
    tta: list[str]
    n_splits: int
    test_from: str  # the models that predicted the eval set: folds, refit or both
    age_cuts: list[int] | None = None
    age_cut: list[float] | None = None  # the cuts the years members' ages were summed at, where tuned

    def __post_init__(self):
        self.members = [m if isinstance(m, MemberRef) else MemberRef(**m) for m in self.members]

    @classmethod
    def upgrade(cls, fields: dict) -> dict:
        if fields["version"] != 1:
            return fields
        old = {"test_from": "folds", **fields}
        if "members" not in old and {"backbones", "tta", "n_splits"} <= old.keys():
            old["members"] = own_members(old["backbones"], old["tta"], old["n_splits"])
        if "submission_honest_f1" not in old and isinstance(old.get("honest_f1"), dict):
            old["submission_honest_f1"] = old["honest_f1"].get(old.get("chosen"))
        return old


def read_weights(run: Path) -> Weights | None:
    """The run's weights.json, None when it has none; a damaged one is the user's to remake."""
    try:
        return Weights.read(weights_json(run))
    except RecordError as e:
        raise BadInput(f"{e}; rerun `maskfold ensemble` for {run}") from None


def load_weights(run: Path) -> Weights:
    weights = read_weights(run)
    if weights is None:
        raise MissingInput(f"{weights_json(run)} not found; run `maskfold ensemble` for this run first")
    return weights
