"""The records a job writes (pipeline.records) and what job_state makes of files it cannot use."""
import json

import pytest

from pipeline.layout import done_json
from pipeline.records import BestMeta, LastMeta, PairDone, RecordError, RefitDone
from pipeline.train.job import fold_job
from pipeline.train.state import MISSING, STALE, job_state
from tests.conftest import tiny_config

DONE = dict(hash="h", data="d", tta=["orig"], eval=None, test=False, backbone="test_resnet", epochs_run=3)


def test_a_record_reads_back_and_an_unversioned_file_reads_as_version_1():
    done = PairDone(**DONE, fold=0, best_epoch=2, val_f1=0.5, oof_f1_tta=0.4)
    assert PairDone.from_json(done.to_json()) == done and done.version == 2
    old = {k: v for k, v in json.loads(done.to_json()).items() if k != "version"}
    old["fold_extra"] = "ignored"  # a field another version wrote
    assert PairDone.from_json(json.dumps(old)).version == 1
    refit = RefitDone(**DONE, epochs=3, photos=210)
    assert refit.best_epoch == 3 and RefitDone.from_json(refit.to_json()) == refit


def test_last_pt_of_version_1_counted_best_epoch_from_0():
    fields = dict(epoch=3, best_f1=0.4, updates=9, history=[], rng={}, config={}, hash="h", data="d")
    assert LastMeta.from_checkpoint({**fields, "best_epoch": 1}).best_epoch == 2  # version 1: 0-based
    assert LastMeta.from_checkpoint({**fields, "best_epoch": 0}).best_epoch == 1
    assert LastMeta.from_checkpoint({**fields, "best_epoch": -1}).best_epoch == 0  # none yet
    assert LastMeta.from_checkpoint({**fields, "best_epoch": 2, "version": 2}).best_epoch == 2


def test_a_file_missing_a_field_is_an_error_naming_it():
    with pytest.raises(RecordError, match=r"x/done.json: not a PairDone record of version 1 .*best_epoch"):
        PairDone.from_json(json.dumps({**DONE, "fold": 0, "val_f1": 0.5, "oof_f1_tta": 0.4}), "x/done.json")
    with pytest.raises(RecordError, match="not JSON"):
        PairDone.from_json("{")


def test_a_damaged_done_json_makes_the_job_stale_not_a_crash(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir)
    job = fold_job(cfg, "test_resnet", 0)
    assert job_state(cfg, job).status == MISSING
    job.folder.mkdir(parents=True)
    done_json(job.folder).write_text(json.dumps({"hash": cfg.pair_hash("test_resnet")}))  # a field-poor record
    state = job_state(cfg, job)
    assert state.status == STALE and "not a PairDone record" in state.reason and str(job.folder) in state.reason


WEIGHTS = dict(method="soft", backbones=["a"], chosen="equal weights", honest_f1={"equal weights": 0.5},
               weights=[1.0], offsets=[0.0] * 18, tta=["orig"], n_splits=3)


def test_weights_json_reads_back_and_version_1_reads_as_a_run_of_its_own_backbones():
    from ensemble.weights import OWN_RUN, MemberRef, Weights, own_members

    w = Weights(**WEIGHTS, submission_honest_f1=0.5, test_from="both", members=own_members(["a"], ["orig"], 3))
    assert Weights.from_json(w.to_json()) == w and w.version == 2
    old = Weights.from_json(json.dumps(WEIGHTS))  # before members, test_from and the submission's own figure
    assert old.version == 1 and old.test_from == "folds" and old.submission_honest_f1 == 0.5
    assert old.members == [MemberRef(name="a", run=OWN_RUN, backbone="a", tta=["orig"], n_splits=3)]
    with pytest.raises(RecordError, match=r"w/weights.json: not a Weights record of version 1 .*weights"):
        Weights.from_json(json.dumps({k: v for k, v in WEIGHTS.items() if k != "weights"}), "w/weights.json")


def test_a_damaged_weights_json_is_the_users_to_remake(tmp_path):
    from ensemble.weights import load_weights
    from pipeline.errors import BadInput, MissingInput
    from pipeline.layout import weights_json

    with pytest.raises(MissingInput, match="weights.json not found; run `maskfold ensemble`"):
        load_weights(tmp_path)
    weights_json(tmp_path).parent.mkdir(parents=True)
    weights_json(tmp_path).write_text("[]")
    with pytest.raises(BadInput, match=r"weights.json: not a Weights record; rerun `maskfold ensemble`"):
        load_weights(tmp_path)


def test_best_pt_of_version_1_named_a_refits_fold_full():
    fields = dict(backbone={}, config={}, mean=[0], std=[1], img_size=[8, 8], epoch=1, f1=-1.0, hash="h", data="d")
    meta = BestMeta(**fields, fold=None)
    assert BestMeta.from_checkpoint(meta.to_checkpoint({})) == meta
    old = BestMeta.from_checkpoint({"model": {}, **fields, "fold": "full"})
    assert old.fold is None and old.version == 1
    with pytest.raises(RecordError, match="x/best.pt: not a BestMeta record"):
        BestMeta.from_checkpoint({"model": {}, "fold": 0}, "x/best.pt")


def test_a_finished_job_is_known_from_its_records_without_opening_a_checkpoint(data_dir, tmp_path, monkeypatch):
    import torch

    from pipeline.layout import best_pt, eval_digest, last_pt, oof_npz, run_digest, test_npz
    from pipeline.train.state import FINISHED

    cfg = tiny_config(tmp_path, data_dir)
    job = fold_job(cfg, "test_resnet", 0)
    job.folder.mkdir(parents=True)
    for path in (best_pt, last_pt, oof_npz, test_npz):
        path(job.folder).write_bytes(b"not read")
    done = PairDone(**{**DONE, "hash": job.identity, "data": run_digest(cfg.run_dir), "tta": list(cfg.tta),
                       "eval": eval_digest(cfg.data_dir), "test": True}, fold=0, best_epoch=2, val_f1=0.5,
                    oof_f1_tta=0.4)
    done_json(job.folder).write_text(done.to_json())

    def opened(*a, **kw):
        raise AssertionError("a checkpoint was opened")

    monkeypatch.setattr(torch, "load", opened)
    state = job_state(cfg, job)
    assert state.status == FINISHED and state.done == done and state.last is None


def test_the_stages_records_read_back_and_other_versions_are_not_theirs(tmp_path):
    from pipeline.data.extra import ExtraRecord, read_record, write_record
    from pipeline.layout import extra_record, tracking_json
    from pipeline.tracking.record import TrackingRecord, _read

    extra = ExtraRecord(source="external", whole_persons=True, photo_ids=False, photos=7)
    write_record(tmp_path, extra)
    assert read_record(tmp_path) == extra
    extra_record(tmp_path).write_text(json.dumps({**json.loads(extra.to_json()), "version": 9}))
    assert read_record(tmp_path) is None  # a newer writer's: made again by its stage
    tracked = TrackingRecord(kind="mlflow", setting=None, uri="u", project="p", run="r", group="g")
    tracking_json(tmp_path).write_text(tracked.to_json())
    assert _read(tmp_path) == tracked
    tracking_json(tmp_path).write_text("{}")
    assert _read(tmp_path) is None  # not a record: a new tracked run is made
