"""<run_dir>/ensemble/weights.json, the ensemble's choice: what `maskfold predict` replays to reproduce the submission
and `maskfold compare` reads. A version-1 file (before it had a version) may lack the members (then the run's own
backbones), test_from (then the folds) and the choice's own honest figure (then the chosen blend's)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInput, MissingInput
from pipeline.layout import weights_json
from pipeline.records import Record, RecordError

OWN_RUN = "."  # a member of the run that holds weights.json, found beside it wherever the run is moved


@dataclass(kw_only=True)
class MemberRef:
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
    method: str
    backbones: list[str]
    chosen: str  # the blend of the submission
    honest_f1: dict[str, float]  # each blend's
    submission_honest_f1: float  # the choice's own
    members: list[MemberRef]
    weights: list[float]
    offsets: list[float]
    stacker: dict | None = None
    task_weights: list | None = None  # the per-task blend's weights (a row per task: mask, gender, age band), if chosen
    tta: list[str]
    n_splits: int
    test_from: str  # folds, refit or both: the models that predicted the eval set
    age_cuts: list[int] | None = None
    age_cut: list[float] | None = None  # where tuned: the cuts the years members' ages are summed at

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


def load_weights(run: Path, required: bool = True) -> Weights | None:
    """The run's weights.json (None where it has none and need not); a damaged one is the user's to remake."""
    try:
        weights = Weights.read(weights_json(run))
    except RecordError as e:
        raise BadInput(f"{e}; rerun `maskfold ensemble` for {run}") from None
    if weights is None and required:
        raise MissingInput(f"{weights_json(run)} not found; run `maskfold ensemble` for this run first")
    return weights
