"""The records a job writes (pipeline.records) and what job_state makes of files it cannot use."""
import json

import pytest

from pipeline.layout import done_json
from pipeline.records import LastMeta, PairDone, RecordError, RefitDone
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
