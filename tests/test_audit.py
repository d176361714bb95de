"""The label audit: scoring on synthetic OOF arrays, and the loop audit -> copy rows -> check-data end to end."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from audit.run import fix_rows
from audit.score import age_suspects, gender_suspects, mask_suspects, photo_suspects, rank_suspects
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.io import atomic_save_npz
from pipeline.labels import MASKS, PHOTOS, age_band, encode_label, photo_mask
from pipeline.layout import audit_files, blended_oof_npz, folds_csv
from pipeline.tables.label_fixes import load_label_fixes
from pipeline.tables.train import read_train
from pipeline.tools.demo_data import make_demo_data
from pipeline.tools.label_noise import INJECTED_ERRORS, across_cut
from tests.conftest import ROOT, TINY, cli_args, make_config, tiny_config

CUTS = (30, 60)


def synthetic(persons: int, seed: int = 0):
    """Photos of `persons` persons with labels, and their truth: (photos table, true labels)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(persons):
        gender, age = ("male", "female")[p % 2], int(rng.choice([22, 45, 70]))
        for photo in PHOTOS:
            mask = photo_mask(photo)
            band = int(age_band(age, CUTS))
            rows.append({"image_id": f"p{p}/{photo}", "path": f"train/images/p{p}/{photo}.jpg", "person_id": f"p{p}",
                         "gender": gender, "age": age, "age_band": band, "mask": mask, "photo": photo,
                         "mask_code": MASKS.index(mask), "label": encode_label(mask, gender, band)})
    photos = pd.DataFrame(rows)
    return photos, photos["label"].to_numpy().copy()


def oracle(truth: np.ndarray, seed: int = 0, hit: float = 0.6) -> np.ndarray:
    """OOF probabilities of a good model: `hit` on the true class, the rest spread at random."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(18, 0.5), len(truth)) * (1 - hit)
    p[np.arange(len(truth)), truth] += hit
    return p


def relabel(photos, person, **changes):
    """Write wrong labels for one person (the truth stays in the probabilities)."""
    rows = photos["person_id"] == person
    for col, value in changes.items():
        photos.loc[rows, col] = value
    photos["age_band"] = age_band(photos["age"].to_numpy(), CUTS)
    photos["mask_code"] = photos["mask"].map(MASKS.index)
    photos["label"] = [encode_label(m, g, b) for m, g, b in zip(photos["mask"], photos["gender"], photos["age_band"])]


def test_a_flipped_gender_ranks_first_and_only_it_scores_above_zero():
    photos, truth = synthetic(12)
    probs = oracle(truth)
    relabel(photos, "p3", gender="male")  # p3 is drawn female
    s = gender_suspects(photos, probs).sort_values("score", ascending=False)
    top = s.iloc[0]
    assert (top.person_id, top.field, top.old, top.new) == ("p3", "gender", "male", "female")
    assert top.score > 1 and (s["score"].iloc[1:] < 0).all()


def test_an_age_across_a_cut_ranks_first_with_the_nearest_cut_age():
    photos, truth = synthetic(12)
    probs = oracle(truth)
    young = photos.loc[photos["age"] == 22, "person_id"].iloc[0]
    relabel(photos, young, age=35)
    s = age_suspects(photos, probs, CUTS).sort_values("score", ascending=False)
    assert tuple(s.iloc[0][["person_id", "old", "new"]]) == (young, "35", "29")
    assert (s["score"].iloc[1:] < 0).all()


def test_swaps_and_a_single_photo_are_told_apart():
    photos, truth = synthetic(12)
    probs = oracle(truth)
    rows = photos["person_id"] == "p5"
    photos.loc[rows & (photos["photo"] == "incorrect_mask"), "mask"] = "normal"
    photos.loc[rows & (photos["photo"] == "normal"), "mask"] = "incorrect"
    photos.loc[(photos["person_id"] == "p6") & (photos["photo"] == "mask2"), "mask"] = "normal"
    relabel(photos, "none")
    s = mask_suspects(photos, probs).set_index("person_id")
    assert tuple(s.loc["p5", ["field", "old", "new", "marked"]]) == ("swap", "incorrect_mask", "normal",
                                                                      "incorrect_mask normal")
    assert tuple(s.loc["p6", ["field", "old", "new"]]) == ("mask", "mask2", "wear")
    assert s.loc["p5", "score"] > s.loc["p6", "score"] > 0
    assert (s.drop(["p5", "p6"])["score"] < 0).all()


def test_cleanlab_finds_a_single_photo_and_rank_leaves_out_what_a_person_suspect_covers():
    photos, truth = synthetic(20)
    probs = oracle(truth, hit=0.8)
    # one photo confidently another mask state: cleanlab's kind of issue
    i = photos.index[(photos["person_id"] == "p2") & (photos["photo"] == "mask4")][0]
    probs[i] = oracle(np.array([encode_label("incorrect", photos["gender"][i], photos["age_band"][i])]), hit=0.9)[0]
    relabel(photos, "p9", gender="male")  # p9 is drawn female: a person suspect, and cleanlab flags its photos
    flagged = photo_suspects(photos, probs, CUTS)
    assert ("p2", "mask", "mask4", "incorrect") in set(map(tuple, flagged[["person_id", "field", "old", "new"]].values))
    ranked = rank_suspects(photos, probs, CUTS)
    assert (ranked["score"] > 0).all() and ranked["score"].is_monotonic_decreasing
    key = ranked[["person_id", "field", "old", "new"]].apply(tuple, axis=1)
    assert not key.duplicated().any()
    assert ranked.iloc[0]["person_id"] == "p9" and ranked.iloc[0]["kind"] == "gender"


def test_suspect_rows_load_as_label_fixes(tmp_path):
    photos, truth = synthetic(10)
    probs = oracle(truth, hit=0.3)
    relabel(photos, "p1", gender="male")
    # a '#' would start a comment in the fix file and cut the row short: notes are written without it
    rows = fix_rows(rank_suspects(photos, probs, CUTS).assign(reason=lambda d: d["reason"] + " #3"))
    path = tmp_path / "fixes.csv"
    rows.to_csv(path, index=False)
    loaded = load_label_fixes(path)
    assert len(loaded) == len(rows) > 0 and all(fix.note.endswith(" 3") for fix in loaded)


def test_across_cut_mirrors_over_the_nearest_cut():
    assert [across_cut(a) for a in (29, 25, 30, 35, 55, 59, 60, 70)] == [30, 34, 29, 24, 64, 60, 59, 49]
    assert all(age_band(a) != age_band(across_cut(a)) for a in range(18, 86))


def injected_truth(data: Path) -> pd.DataFrame:
    """The drawn truth: the data read with the injected errors' fix rows applied."""
    errors = data / "train" / INJECTED_ERRORS
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data_dir={data}", f"data.label_fixes={errors}"])
    truth, report = read_train(data, cfg.data)
    assert not report.problems and len(report.fixes) == 6
    return truth.set_index("image_id")


def test_copied_true_positive_rows_apply_in_check_data(tmp_path):
    """demo-data with errors -> folds -> OOF probabilities (a good model's, standing in for train-all and ensemble)
    -> audit -> the rows that name an injected error copied as they are -> check-data applies every one."""
    data = make_demo_data(tmp_path / "data", persons=24, eval_images=4, seed=3, elder_pool=0, n_jobs=1,
                          label_noise=2)
    injected = pd.read_csv(data / "train" / INJECTED_ERRORS, dtype=str)
    assert sorted(injected["field"]) == ["age", "age", "gender", "gender", "swap", "swap"]
    runner = CliRunner()
    res = runner.invoke(main, cli_args("check-data", tmp_path, data))
    assert res.exit_code == 0 and "warning" not in res.output and INJECTED_ERRORS not in res.output
    assert runner.invoke(main, cli_args("folds", tmp_path, data)).exit_code == 0
    cfg = make_config(tmp_path, data)
    folds = pd.read_csv(folds_csv(cfg.run_dir), dtype={"person_id": str})
    truth = injected_truth(data).loc[folds["image_id"], "label"].to_numpy()
    atomic_save_npz(blended_oof_npz(cfg.run_dir), image_id=folds["image_id"].to_numpy().astype(str),
                    probs=oracle(truth), labels=folds["label"].to_numpy(), pred=truth)

    res = runner.invoke(main, cli_args("audit", tmp_path, data) + ["--top", "6"])
    assert res.exit_code == 0, res.output
    files = audit_files(cfg.run_dir)
    assert files["png"].stat().st_size > 0 and "## How to apply a fix" in files["md"].read_text()
    lines = files["csv"].read_text().splitlines()
    wanted = {(r.person_id, r.field) for r in injected.itertuples()}
    copied = [ln for ln in lines[1:] if tuple(ln.split(",")[:2]) in wanted]
    assert len({tuple(ln.split(",")[:2]) for ln in copied}) == 6, "every injected error is a suspect"
    assert set(lines[1:7]) <= set(copied), "and they rank first"

    fixes = tmp_path / "fixes.csv"
    fixes.write_text("\n".join([lines[0], *copied]) + "\n")
    res = runner.invoke(main, cli_args("check-data", tmp_path, data, f"data.label_fixes={fixes}"))
    assert res.exit_code == 0 and f"label fixes applied: {len(copied)}" in res.output, res.output
    assert "not applied" not in res.output
    fixed, _ = read_train(data, load_config(ROOT / "configs" / "demo.yaml",
                                            [f"data_dir={data}", f"data.label_fixes={fixes}"]).data)
    fixed = fixed.set_index("image_id").loc[folds["image_id"], "label"].to_numpy()
    assert (fixed == truth).all(), "the copied rows give back the drawn labels"


@pytest.mark.slow
def test_audit_of_a_trained_run_blend_and_member(tmp_path, demo_source):
    from ensemble.run import run_ensemble
    from pipeline.train.jobs import train_all

    data = tmp_path / "data"
    shutil.copytree(demo_source, data)
    cfg = tiny_config(tmp_path, data, "train.epochs=1")
    assert (train_all(cfg, jobs=1, log=lambda m: None)["status"] == "done").all()
    run_ensemble(cfg, log=lambda m: None)
    runner = CliRunner()
    args = cli_args("audit", tmp_path, data, *TINY, "train.epochs=1")
    for extra in ([], ["--member", "test_resnet"]):
        res = runner.invoke(main, args + extra)
        assert res.exit_code == 0, res.output
        assert ("member test_resnet" in res.output) == bool(extra)
        rows = pd.read_csv(audit_files(cfg.run_dir)["csv"], dtype=str, keep_default_na=False)
        assert len(load_label_fixes(audit_files(cfg.run_dir)["csv"])) == len(rows)
    res = runner.invoke(main, args + ["--member", "nope"])
    assert res.exit_code == 1 and "nope" in res.output and "test_resnet" in res.output


def test_demo_data_refuses_more_errors_than_persons(tmp_path):
    res = CliRunner().invoke(main, ["demo-data", "--out", str(tmp_path / "d"), "--persons", "5", "--label-noise", "2"])
    assert res.exit_code == 1 and "--label-noise 2 needs 6 persons" in res.output and "--persons" in res.output
    assert not (tmp_path / "d" / "train").exists()


def test_injected_errors_never_empty_a_group_and_say_when_they_do_not_fit():
    from pipeline.tools.label_noise import choose_errors

    people = [{"gender": g, "age": a} for g in ("male", "female") for a in (20, 40, 70) for _ in range(4)]
    chosen = choose_errors(people, 2, seed=0)
    assert sorted(k for _, k in chosen) == ["age", "age", "gender", "gender", "swap", "swap"]
    assert len({i for i, _ in chosen}) == 6
    labelled = pd.Series([(p["label_gender"], int(age_band(p["label_age"]))) for p in people]).value_counts()
    assert len(labelled) == 6 and labelled.min() >= 2
    with pytest.raises(ValueError, match="raise --persons"):
        choose_errors(people[:3], 1, seed=0)  # one group of 3: after a gender flip an age move would leave 1


def test_a_mask_fix_relabels_one_photo_and_a_bad_one_is_refused(data_dir, tmp_path):
    person = pd.read_csv(data_dir / "train" / "train.csv", dtype=str)["path"][0]
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(f"person_id,field,old,new,note\n{person},mask,mask3,normal,audit photo 2.1\n")
    cfg = make_config(tmp_path, data_dir, f"data.label_fixes={fixes}")
    df, report = read_train(data_dir, cfg.data)
    masks = df[df["person_id"] == person].set_index("photo")["mask"]
    assert masks["mask3"] == "normal" and masks["mask2"] == "wear" and masks["normal"] == "normal"
    assert report.fixes == [f"{person}: photo mask3 shows normal (audit photo 2.1)"]
    fixes.write_text(f"person_id,field,old,new,note\n{person},mask,mask3,off,x\n")
    res = CliRunner().invoke(main, cli_args("check-data", tmp_path, data_dir, f"data.label_fixes={fixes}"))
    assert res.exit_code == 1 and f"{fixes} line 2" in res.output and "wear, incorrect, normal" in res.output
