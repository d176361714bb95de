import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ensemble import blend
from ensemble.run import run_ensemble
from ensemble.submission import SubmissionError, validate_submission
from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.train.jobs import train_all
from tests.conftest import tiny_config


def onehot(idx, n=18, hi=0.9):
    p = np.full((len(idx), n), (1 - hi) / (n - 1))
    p[np.arange(len(idx)), idx] = hi
    return p


def test_soft_and_hard_vote_by_hand():
    a = np.array([[0.6, 0.4], [0.2, 0.8]])
    b = np.array([[0.2, 0.8], [0.4, 0.6]])
    assert np.allclose(blend.soft_vote([a, b]), [[0.4, 0.6], [0.3, 0.7]])
    assert np.allclose(blend.soft_vote([a, b], [3, 1]), [[0.5, 0.5], [0.25, 0.75]])
    c = np.array([[0.9, 0.1], [0.3, 0.7]])
    # photo 0: votes 0, 1, 0 -> class 0; photo 1: all vote 1
    assert list(blend.hard_vote([a, b, c]).argmax(1)) == [0, 1]
    # a 1-1 tie goes to the larger summed probability: 0.6 + 0.2 < 0.4 + 0.8
    assert blend.hard_vote([a, b]).argmax(1)[0] == 1


def test_fast_macro_f1_matches_sklearn():
    from pipeline.model.metrics import macro_f1

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 18, 500), rng.integers(0, 18, 500)
    p[:200] = y[:200]
    assert blend.fast_macro_f1(y, p) == pytest.approx(macro_f1(y, p))


def test_weight_search_finds_the_better_backbone():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 18, 2000)
    good = onehot(y, hi=0.6)
    noisy_labels = np.where(rng.random(2000) < 0.6, rng.integers(0, 18, 2000), y)
    bad = onehot(noisy_labels, hi=0.99)  # confidently wrong 60% of the time: dominates an equal-weight mean
    equal = blend.fast_macro_f1(y, blend.soft_vote([good, bad]).argmax(1))
    w = blend.search_weights([good, bad], y)
    searched = blend.fast_macro_f1(y, blend.soft_vote([good, bad], w).argmax(1))
    assert w[0] > w[1] and searched > equal + 0.1


def test_offsets_recover_an_under_predicted_rare_class():
    rng = np.random.default_rng(1)
    y = rng.choice(18, 3000, p=np.r_[np.full(17, 0.97 / 17), 0.03])
    probs = onehot(y, hi=0.5)
    rare = y == 17
    probs[rare, 0] = 0.55  # the model always prefers class 0 for the rare class, by a little
    probs /= probs.sum(1, keepdims=True)
    before = blend.fast_macro_f1(y, probs.argmax(1))
    off = blend.tune_offsets(probs, y)
    after = blend.fast_macro_f1(y, blend.predict_with(probs, off))
    assert off[17] > off[0] and after > before + 0.04


def test_nested_figure_shows_no_gain_on_random_predictions():
    rng = np.random.default_rng(2)
    n = 1800
    y = rng.integers(0, 18, n)
    probs = [rng.dirichlet(np.ones(18), n), rng.dirichlet(np.ones(18), n)]
    groups = np.repeat(np.arange(n // 6), 6)
    base = blend.fast_macro_f1(y, blend.soft_vote(probs).argmax(1))
    fitted = blend.fit_blend("weights", probs, y, offsets=True)
    in_sample = blend.fast_macro_f1(y, blend.predict_with(blend.soft_vote(probs, fitted["weights"]), fitted["offsets"]))
    nested = blend.fast_macro_f1(y, blend.nested_blend("weights", probs, y, blend.person_parts(groups, 2), True))
    assert in_sample > base + 0.01  # fitting on the same photos always looks like a gain
    assert nested < base + 0.01  # the honest figure does not


IDS = ["a.jpg", "b.jpg", "c.jpg"]


@pytest.mark.parametrize("ids, ans, message", [
    (["b.jpg", "a.jpg", "c.jpg"], [0, 1, 2], "not in eval/info.csv order"),
    (["a.jpg", "b.jpg"], [0, 1], "missing"),
    (["a.jpg", "b.jpg", "c.jpg", "d.jpg"], [0, 1, 2, 3], "not in eval/info.csv"),
    (["a.jpg", "b.jpg", "b.jpg"], [0, 1, 2], "repeated"),
    (IDS, [0, 18, 2], "outside the integers 0-17"),
    (IDS, [0, -1, 2], "outside the integers 0-17"),
    (IDS, [0, 1.5, 2], "outside the integers 0-17"),
])
def test_validator_rejects(ids, ans, message):
    with pytest.raises(SubmissionError, match=message):
        validate_submission(pd.DataFrame({"ImageID": ids, "ans": ans}), IDS)
    validate_submission(pd.DataFrame({"ImageID": IDS, "ans": [0, 17, 5]}), IDS)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, demo_source):
    tmp = tmp_path_factory.mktemp("ens")
    data = tmp / "data"
    shutil.copytree(demo_source, data)
    cfg = tiny_config(tmp, data, "train.epochs=1", "backbones=[{name: test_resnet}, {name: test_efficientnet}]")
    table = train_all(cfg, jobs=1, log=lambda m: None)
    assert (table["status"] == "done").all()
    return cfg, data


def test_ensemble_writes_submission_report_and_blend(tiny_run):
    cfg, data = tiny_run
    lines = []
    run_ensemble(cfg, log=lines.append)
    run = Path(cfg.run_dir)
    sub = pd.read_csv(run / "submission.csv")
    assert list(sub["ImageID"]) == list(pd.read_csv(data / "eval/info.csv")["ImageID"])
    for name in ("report.md", "confusion.png", "class_f1.png", "weights.json", "oof.npz", "curves.png", "mistakes.png"):
        assert (run / "ensemble" / name).is_file(), name
    report = (run / "ensemble" / "report.md").read_text()
    assert "## Around the age cuts" in report and "most confident OOF mistakes" in report
    assert "nested" in report and "test_efficientnet" in report and "| 17 |" in report
    fitted = json.loads((run / "ensemble" / "weights.json").read_text())
    assert fitted["backbones"] == ["test_resnet", "test_efficientnet"] and len(fitted["offsets"]) == 18
    assert fitted["chosen"] == max(fitted["honest_f1"], key=fitted["honest_f1"].get)
    assert set(fitted["honest_f1"]) == {f"{k}{o}" for k in ("equal weights", "weights", "selection", "stacking",
                                                            "per-task weights")
                                        for o in ("", " + offsets")}
    assert any("eval macro F1 against" in ln for ln in lines)
    oof = np.load(run / "ensemble" / "oof.npz")
    assert len(oof["image_id"]) == 30 * 7


def test_every_json_file_of_a_run_reads_back_through_its_record(tiny_run):
    from ensemble.weights import Weights
    from pipeline.data.extra import ExtraRecord
    from pipeline.records import PairDone, RefitDone
    from pipeline.tracking.record import TrackingRecord

    cfg, _ = tiny_run
    run = Path(cfg.run_dir)
    if not (run / "ensemble" / "weights.json").is_file():
        run_ensemble(cfg, log=lambda m: None)
    records = {"weights.json": Weights, "extra.json": ExtraRecord, "tracking.json": TrackingRecord}
    # the photo cache is shared by runs (cache_dir, here inside the run) and read by its own module alone
    found = sorted(p for p in run.rglob("*.json") if Path(cfg.cache_dir) not in p.parents)
    assert {p.name for p in found} >= {"done.json", "weights.json"}
    for path in found:
        record = (PairDone if path.parent.name.startswith("fold") else RefitDone) if path.name == "done.json" \
            else records[path.name]
        text = path.read_text()
        read = record.from_json(text)
        assert record.from_json(read.to_json()) == read and json.loads(read.to_json()) == json.loads(text), path


def test_ensemble_refuses_missing_predictions(tiny_run, tmp_path):
    cfg, data = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(cfg.run_dir, copy, ignore=shutil.ignore_patterns("cache"))
    cfg2 = dataclasses.replace(cfg, run_dir=str(copy))
    (copy / "models/test_efficientnet/fold1/oof.npz").unlink()
    with pytest.raises(DataError, match="test_efficientnet fold 1"):
        run_ensemble(cfg2, log=lambda m: None)
    shutil.copy(Path(cfg.run_dir) / "models/test_efficientnet/fold1/oof.npz", copy / "models/test_efficientnet/fold1/")
    (copy / "models/test_resnet/fold0/test.npz").unlink()
    with pytest.raises(DataError, match=r"test_resnet fold 0 \(no .*test predictions"):
        run_ensemble(cfg2, log=lambda m: None)


def test_predict_folder_with_a_broken_file(tiny_run, tmp_path):
    cfg, data = tiny_run
    run_ensemble(cfg, log=lambda m: None)
    photos = tmp_path / "photos" / "nested"
    photos.mkdir(parents=True)
    for f in sorted((data / "eval" / "images").iterdir())[:3]:
        shutil.copy(f, photos / f.name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "photos" / "notes.txt").write_text("ignored: not a photo")
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(main, ["predict", "--run", cfg.run_dir, "--images", str(tmp_path / "photos"),
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "unreadable, skipped" in res.output and "broken.jpg" in res.output
    df = pd.read_csv(out)
    assert len(df) == 3 and set(df.columns) >= {"path", "p0", "p17", "class", "mask", "gender", "age_band"}
    assert np.allclose(df[[f"p{i}" for i in range(18)]].sum(axis=1), 1, atol=1e-3)
    assert df["class"].between(0, 17).all()


def test_predict_reproduces_the_submission(tiny_run, tmp_path):
    """The same models, TTA, weights and offsets through the folder path give the submission's classes."""
    from ensemble.predict import predict_folder

    cfg, data = tiny_run
    run_ensemble(cfg, log=lambda m: None)
    df = predict_folder(cfg.run_dir, data / "eval" / "images", tmp_path / "p.csv", log=lambda m: None)
    df["ImageID"] = [Path(p).name for p in df["path"]]
    sub = pd.read_csv(Path(cfg.run_dir) / "submission.csv").merge(df, on="ImageID")
    assert len(sub) == 12 and (sub["ans"] == sub["class"]).all()
