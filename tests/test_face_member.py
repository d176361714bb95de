"""The face member (backbones kind face_embedding) on real faces: embeddings cached once per photo, a head per task
fitted per fold on its training persons only, ordinary jobs and files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from folds.make import write_folds
from pipeline.config import load_config
from pipeline.labels import decode_label
from pipeline.layout import done_json, oof_npz, pair_dir
from tests.conftest import ROOT, SHARED_DATA

UTK = SHARED_DATA / "utkface"
MTF = SHARED_DATA / "maskthe-face"


def _faces_missing() -> str | None:
    from pipeline.faces.embeddings import missing_extra

    return missing_extra()


pytestmark = [
    pytest.mark.skipif(not UTK.is_dir(), reason="the optional real-face test data (../shared/data/utkface) is absent"),
    pytest.mark.skipif(_faces_missing() is not None, reason="the `faces` extra (dlib) is not installed"),
]
QUIET = dict(log=lambda m: None)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A real-face set in the competition layout: 40 persons, 30 of them for training."""
    from external_data.face_set import make_face_data

    return make_face_data(tmp_path_factory.mktemp("faces") / "data", UTK, MTF, persons=40, eval_share=0.25, seed=3,
                          **QUIET)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def face_config(tmp_path, data, cache, *extra):
    sets = [f"data_dir={data}", f"run_dir={tmp_path / 'run'}", f"cache_dir={cache}", "data.use_external=false",
            f"data.label_fixes={ROOT / 'configs' / 'label_fixes.csv'}", "folds.n_splits=3", "train.refit=false",
            "ensemble.test_from=folds", "tta=[orig,hflip]", "backbones=[{name: dlib_face, kind: face_embedding}]",
            *extra]
    cfg = load_config(ROOT / "configs" / "demo.yaml", sets)
    write_folds(cfg, **QUIET)
    return cfg


def _train(cfg, log=None):
    from pipeline.train.jobs import train_all

    return train_all(cfg, log=log or QUIET["log"])


def _oof(cfg):
    parts = [np.load(oof_npz(pair_dir(cfg.run_dir, "dlib_face", k))) for k in range(cfg.folds.n_splits)]
    return np.concatenate([p["labels"] for p in parts]), np.concatenate([p["logits"] for p in parts])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, faces, shared_cache):
    """A face-member run trained once, with the persons each fold's head was fitted on recorded."""
    from pipeline.model import face_head

    seen = []
    real_fit = face_head.fit_head

    def recording(vectors, targets, persons, *a, **k):
        seen.append(set(persons))
        return real_fit(vectors, targets, persons, *a, **k)

    face_head.fit_head = recording
    try:
        cfg = face_config(tmp_path_factory.mktemp("trained"), faces, shared_cache)
        table = _train(cfg)
    finally:
        face_head.fit_head = real_fit
    return cfg, table, seen


def test_member_oof_on_held_out_persons_beats_chance_on_gender_and_age(trained):
    from sklearn.metrics import f1_score

    cfg, table, _ = trained
    assert set(table["status"]) == {"done"}
    labels, logits = _oof(cfg)
    (_, gender, age), (_, g_pred, a_pred) = decode_label(labels), decode_label(logits.argmax(1))
    # chance: 0.5 on gender, about 0.33 on three age bands
    assert f1_score(gender, g_pred, average="macro") > 0.7
    assert f1_score(age, a_pred, average="macro") > 0.45


@pytest.fixture(scope="module")
def ensembled(trained):
    from ensemble.run import run_ensemble

    cfg, _, _ = trained
    return cfg, run_ensemble(cfg, **QUIET)


def test_the_ensemble_reads_the_member_as_any_member(ensembled):
    _, result = ensembled
    assert result["weights"].backbones == ["dlib_face"] and result["figures"]["eval_f1"] is not None
    assert any("per-task weights" in label for label in result["rows"])


def test_predict_on_a_new_folder_replays_the_submission_and_embeds_new_photos(ensembled, faces, tmp_path):
    import shutil

    from PIL import Image

    from ensemble.predict import predict_folder

    cfg, _ = ensembled
    folder = tmp_path / "new"
    folder.mkdir()
    chosen = sorted((faces / "eval" / "images").glob("*.jpg"))[:6]
    for f in chosen:
        shutil.copy(f, folder / f.name)
    Image.open(chosen[0]).transpose(Image.FLIP_LEFT_RIGHT).save(folder / "zz_new_photo.jpg")  # never embedded
    lines = []
    df = predict_folder(cfg.run_dir, folder, tmp_path / "pred.csv", device="cpu", log=lines.append)
    submission = pd.read_csv(cfg.run_dir + "/submission.csv")
    truth = submission.set_index("ImageID")["ans"]
    known = df[~df["path"].str.endswith("zz_new_photo.jpg")]
    assert list(known["class"]) == [truth[p.split("/")[-1]] for p in known["path"]]
    assert len(df) == 7 and df["path"].str.endswith("zz_new_photo.jpg").any()


def test_no_fold_head_ever_sees_its_own_persons(trained):
    """Every row a fold's head is fitted on (its inner split included: fit_head sees nothing else) belongs to
    another fold's persons, and its OOF rows are exactly its own fold's photos."""
    cfg, _, seen = trained
    folds = pd.read_csv(cfg.run_dir + "/folds.csv", dtype={"person_id": str})
    outside = [set(folds.loc[folds["fold"] != k, "person_id"]) for k in range(cfg.folds.n_splits)]
    # one head per fold (no refit here), each fitted on exactly the persons outside its fold
    assert sorted(map(sorted, seen)) == sorted(map(sorted, outside))
    for k in range(cfg.folds.n_splits):
        oof_ids = set(np.load(oof_npz(pair_dir(cfg.run_dir, "dlib_face", k)))["image_id"])
        assert oof_ids == set(folds.loc[folds["fold"] == k, "image_id"])


def test_embeddings_cached_and_reused_by_a_second_run_and_a_job_killed_before_done_json_fits_again(
        tmp_path, trained, faces, shared_cache, monkeypatch):
    from pipeline.faces import embeddings

    lines = []

    def forbidden(*a, **k):
        raise AssertionError("an embedding was computed again")

    monkeypatch.setattr(embeddings, "default_jobs", lambda: 1)  # in this process, where the patch holds
    monkeypatch.setattr(embeddings, "_embed_files", forbidden)
    second = face_config(tmp_path, faces, shared_cache)  # another run on the same photos, the same cache
    table = _train(second, log=lines.append)
    assert set(table["status"]) == {"done"}
    assert not any("photos to embed" in line for line in lines)
    assert any("face boxes of the embeddings" in line and "found" in line for line in lines)
    # killed after best.pt, before done.json: that job is fitted again (to the same head), the others skipped
    job = pair_dir(second.run_dir, "dlib_face", 1)
    before = np.load(oof_npz(job))["logits"]
    done_json(job).unlink()
    table = _train(second).set_index("fold")
    assert table.loc[1, "status"] == "done" and set(table.drop(index=1)["status"]) == {"skipped"}
    assert np.allclose(np.load(oof_npz(job))["logits"], before)


def test_embeddings_killed_midway_keep_every_finished_chunk(tmp_path, faces, monkeypatch):
    from pipeline.faces import embeddings

    files = sorted(str(f) for f in (faces / "train" / "images").rglob("*.jpg"))[:40]
    specs = [embeddings.box_text(embeddings.FALLBACK_BOX, True)] * len(files)
    real = embeddings._embed_files
    calls = []

    def dies_on_the_second_chunk(files, specs):
        calls.append(len(files))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would stop it
        return real(files, specs)

    monkeypatch.setattr(embeddings, "CHUNK", 16)
    monkeypatch.setattr(embeddings, "_embed_files", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        embeddings.embed(files, specs, tmp_path, n_jobs=1, **QUIET)
    assert len(embeddings._load_store(embeddings.store_dir(tmp_path))) == 16  # the first chunk's shard, whole
    monkeypatch.setattr(embeddings, "_embed_files", real)
    vectors, computed, _ = embeddings.embed(files, specs, tmp_path, n_jobs=1, **QUIET)
    assert computed == 24 and vectors.shape == (40, 2, 128)
    again, computed, _ = embeddings.embed(files, specs, tmp_path, n_jobs=1, **QUIET)
    assert computed == 0 and np.array_equal(again, vectors)


def test_a_run_without_the_faces_extra_skips_the_member_and_says_so(tmp_path, faces, monkeypatch):
    from pipeline.faces import embeddings
    from pipeline.train.face_job import without_unavailable

    cfg = face_config(tmp_path, faces, tmp_path / "cache",
                      "backbones=[{name: test_resnet, lr: 0.003}, {name: dlib_face, kind: face_embedding}]")
    monkeypatch.setattr(embeddings, "missing_extra", lambda: "the `faces` extra (dlib) is not installed")
    lines = []
    kept = without_unavailable(cfg, lines.append)
    assert kept.backbone_names() == ["test_resnet"]
    assert lines == ["skipped the face member dlib_face: the `faces` extra (dlib) is not installed"]


def test_two_ids_of_one_face_land_in_one_fold_and_check_data_names_them(tmp_path, faces, shared_cache):
    import shutil

    from click.testing import CliRunner

    from pipeline.cli import main

    data = tmp_path / "data"
    shutil.copytree(faces, data)
    train = pd.read_csv(data / "train" / "train.csv", dtype={"id": str})
    src = train.iloc[0]
    twin = {**src.to_dict(), "id": "399999", "path": f"399999_{src['gender']}_{src['race']}_{src['age']}"}
    shutil.copytree(data / "train" / "images" / src["path"], data / "train" / "images" / twin["path"])
    pd.concat([train, pd.DataFrame([twin])]).to_csv(data / "train" / "train.csv", index=False)
    lines = []
    cfg = load_config(ROOT / "configs" / "demo.yaml",
                      [f"data_dir={data}", f"run_dir={tmp_path / 'run'}", f"cache_dir={shared_cache}",
                       "data.use_external=false", "folds.n_splits=3", "folds.same_face=group"])
    folds = write_folds(cfg, log=lines.append)
    fold_of = folds.drop_duplicates("person_id").set_index("person_id")["fold"]
    assert fold_of[src["path"]] == fold_of[twin["path"]]
    assert any("each kept in one fold" in line for line in lines)
    pairs = pd.read_csv(tmp_path / "run" / "same_faces.csv", dtype=str)
    assert {src["path"], twin["path"]} in [set(p) for p in pairs[["person_a", "person_b"]].to_numpy().tolist()]
    assert (tmp_path / "run" / "same_faces.png").is_file()
    result = CliRunner().invoke(main, ["check-data", "--config", str(ROOT / "configs" / "demo.yaml"),
                                       "--set", f"data_dir={data}", "--set", f"run_dir={tmp_path / 'run'}",
                                       "--set", f"cache_dir={shared_cache}", "--set", "data.use_external=false",
                                       "--set", "folds.same_face=group"])
    assert f"{src['path']} and {twin['path']}" in result.output or f"{twin['path']} and {src['path']}" in result.output
    assert "eval photos whose face is a training person's" in result.output


def test_a_planted_face_shows_that_no_head_saw_its_own_persons(trained, tmp_path):
    """Synthetic embeddings on the real folds: gender is written in one coordinate, and every person has a private
    coordinate of their own. One person of fold 0 is planted against the rule (labelled the other gender): a head
    that saw that person learns their private coordinate and recalls their label (as the leaky fit below does); fold
    0's own head, fitted on the other folds only, can only follow the rule."""
    import dataclasses

    from pipeline.faces.embeddings import RunEmbeddings
    from pipeline.layout import folds_csv, read_fold_table
    from pipeline.model import face_head
    from pipeline.train.face_job import FaceJob
    from pipeline.train.job import fold_job
    from pipeline.train.rundata import RunData
    from pipeline.train.state import MISSING, JobState

    cfg, _, _ = trained
    folds = read_fold_table(folds_csv(cfg.run_dir))
    persons = folds["person_id"].astype(str).to_numpy()
    index = {p: i for i, p in enumerate(sorted(set(persons)))}
    gender = (folds["label"].to_numpy() // 3) % 2
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(folds), 2, 8 + len(index))) * 0.1
    vectors[:, :, 0] += np.where(gender == 1, 2.0, -2.0)[:, None]
    vectors[np.arange(len(folds)), :, [8 + index[p] for p in persons]] += 3.0
    planted = persons[folds["fold"].to_numpy() == 0][0]
    rows = persons == planted
    labels = folds["label"].to_numpy().copy()
    labels[rows] += np.where(gender[rows] == 1, -3, 3)  # the other gender, same mask and age band
    folds = folds.assign(label=labels)
    leaky = face_head.fit_head(vectors, np.eye(18)[labels], persons)
    recalled = decode_label(face_head.class_log_probs(leaky, vectors[rows]).argmax(1))[1]
    assert (recalled != gender[rows]).all(), "the plant is too weak to catch a head that saw its own persons"
    run = dataclasses.replace(cfg, run_dir=str(tmp_path / "run"))
    emb = RunEmbeddings(vectors, None, [0.25, 0.2, 0.75, 0.7], "hog", {}, 0, 0.0)
    data = RunData(folds, None, tmp_path, None, "synthetic", None, embeddings=emb)
    FaceJob(run, fold_job(run, "dlib_face", 0), data, log=lambda m: None).fit(JobState(MISSING))
    oof = np.load(oof_npz(pair_dir(run.run_dir, "dlib_face", 0)))
    mine = np.isin(oof["image_id"], folds.loc[rows, "image_id"])
    assert mine.sum() == rows.sum()
    assert (decode_label(oof["logits"][mine].argmax(1))[1] == gender[rows][0]).all()  # the rule, not the plant


def test_sigkill_mid_embedding_then_rerun_embeds_only_the_rest_and_finishes(tmp_path, faces):
    import os
    import signal
    import subprocess
    import sys
    import time

    from pipeline.faces import embeddings

    cache = tmp_path / "cache"
    cfg = face_config(tmp_path, faces, cache)
    sets = [f"data_dir={faces}", f"run_dir={cfg.run_dir}", f"cache_dir={cache}", "data.use_external=false",
            "folds.n_splits=3", "train.refit=false", "ensemble.test_from=folds", "tta=[orig,hflip]",
            "backbones=[{name: dlib_face, kind: face_embedding}]"]
    cmd = [sys.executable, "-m", "pipeline.cli", "train-all", "--config", str(ROOT / "configs" / "demo.yaml")]
    cmd += [w for s in sets for w in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    store = cache / "embeddings"
    deadline = time.time() + 240
    while not list(store.glob("*/*.npz")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    out = proc.stdout.read().decode()
    proc.wait()
    kept = len(embeddings._load_store(next(store.iterdir())))
    assert 0 < kept, out[-2000:]
    total = len(pd.read_csv(cfg.run_dir + "/folds.csv")) + len(pd.read_csv(faces / "eval" / "info.csv"))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"{total - kept} photos to embed ({kept} cached)" in res.stdout
    for k in range(3):
        assert (pair_dir(cfg.run_dir, "dlib_face", k) / "done.json").is_file()
