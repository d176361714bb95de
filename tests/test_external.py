import shutil

import numpy as np
import pandas as pd
import pytest

from external_data.importers import import_csv, import_fairface, import_utkface, select
from external_data.persons import DEFAULT_GEOMETRY, FRAMINGS, make_person, mask_pool
from external_data.run import landmark_source, run_external
from pipeline.errors import BadInput
from pipeline.faces.masks import load_maskthe_face, place_mask, procedural_mask
from pipeline.tools.demo_data import render_portrait, sample_person
from tests.conftest import SHARED_DATA, make_config

UTK = SHARED_DATA / "utkface"
MTF = SHARED_DATA / "maskthe-face"
needs_utk = pytest.mark.skipif(not UTK.is_dir(), reason="the optional real-face test data (utkface) is absent")
needs_mtf = pytest.mark.skipif(not MTF.is_dir(), reason="the optional real-face test data (maskthe-face) is absent")


def faces_available():
    from pipeline.faces import landmarks as faces

    return faces.available()


@needs_utk
def test_utkface_importer_on_the_real_set():
    faces, bad = import_utkface(UTK)
    assert len(faces) + len(bad) == len(list(UTK.iterdir()))
    assert sorted(p.split("/")[-1] for p, _ in bad) == ["61_1_20170109142408075.jpg.chip.jpg",
                                                         "61_3_20170109150557335.jpg.chip.jpg"]
    old = select(faces, min_age=60)
    # 1,451 persons are named as 60+ with a valid gender; one of them (61_1_..., no race field) is malformed,
    # reported and skipped, so 1,450 become usable faces.
    named = [p.split("/")[-1].split("_") for p, _ in bad]
    malformed_60_plus = [n for n in named if int(n[0]) >= 60 and n[1] in ("0", "1")]
    assert len(old) == 1450 and len(old) + len(malformed_60_plus) == 1451
    assert (old["gender"].value_counts().to_dict()) == {"female": 794, "male": 656}
    balanced = select(faces, min_age=60, balance_gender=True, max_persons=100, seed=3)
    assert len(balanced) == 100 and abs((balanced["gender"] == "male").sum() - 50) <= 10


@needs_utk
@pytest.mark.skipif(not faces_available(), reason="the `faces` extra (dlib-bin, face_recognition_models) is missing")
def test_landmarks_found_on_95_percent_of_older_utkface_faces():
    from joblib import Parallel, delayed

    faces, _ = import_utkface(UTK)
    files = select(faces, min_age=60)["file"].tolist()

    def count(chunk):
        from pipeline.data.images import read_rgb
        from pipeline.faces import landmarks as f

        return sum(f.landmarks68(read_rgb(p)) is not None for p in chunk)

    found = sum(Parallel(n_jobs=2)(delayed(count)(files[i::8]) for i in range(8)))
    assert found / len(files) >= 0.95, f"{found} of {len(files)}"


def test_utkface_edge_cases(tmp_path):
    from PIL import Image

    for name in ["70_0_1_20170101.jpg", "65_1_4_20170102.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                 "61_3_0_20170109.jpg.chip.jpg", "66_0_7_2017.jpg", "notes_about_faces.jpg"]:
        Image.new("RGB", (20, 20)).save(tmp_path / name, format="JPEG")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    faces, bad = import_utkface(tmp_path)
    assert sorted(faces["age"]) == [65, 70] and set(faces["race"]) == {"Black", "Others"}
    reasons = dict((p.split("/")[-1], why) for p, why in bad)
    assert "not {age}_{gender}_{race}" in reasons["61_1_20170109142408075.jpg.chip.jpg"]
    assert "gender field 3" in reasons["61_3_0_20170109.jpg.chip.jpg"]
    assert "race field 7" in reasons["66_0_7_2017.jpg"]
    assert "notes_about_faces.jpg" in reasons and len(bad) == 4


def test_fairface_and_csv_edge_cases(tmp_path):
    from PIL import Image

    for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        Image.new("RGB", (20, 20)).save(tmp_path / n, format="JPEG")
    pd.DataFrame({"file": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "gone.jpg"],
                  "age": ["60-69", "more than 70", "old", "20-29", "60-69"],
                  "gender": ["Male", "Female", "Male", "X", "Male"], "race": ["East Asian"] * 5}
                 ).to_csv(tmp_path / "ff.csv", index=False)
    faces, bad = import_fairface(tmp_path / "ff.csv")
    assert list(faces["age"]) == [60, 70] and list(faces["gender"]) == ["male", "female"]
    assert [why.split()[0] for _, why in bad] == ["age", "gender", "photo"] and "line 4" in bad[0][0]
    pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "age": ["64", "7x", "81"], "gender": ["f", "m", "1"]}
                 ).to_csv(tmp_path / "plain.csv", index=False)
    faces, bad = import_csv(tmp_path / "plain.csv")
    assert list(faces["age"]) == [64, 81] and list(faces["gender"]) == ["female", "female"] and len(bad) == 1
    pd.DataFrame({"path": ["a.jpg"], "years": [60]}).to_csv(tmp_path / "nocol.csv", index=False)
    with pytest.raises(ValueError, match="missing column"):
        import_csv(tmp_path / "nocol.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BadInput, match=r"empty.csv: not a readable CSV table .*header line"):
        import_csv(tmp_path / "empty.csv")
    (tmp_path / "landmarks.json").write_text("{not json")
    with pytest.raises(BadInput, match=r"landmarks.json: not a landmarks file"):
        landmark_source("file", str(tmp_path / "plain.csv"))


def _face():
    person = sample_person(np.random.default_rng(4), 1, band=2)
    return render_portrait(person, np.random.default_rng(5))


def _alpha_at(alpha, pt):
    x, y = np.round(pt).astype(int)
    return alpha[y, x]


def _templates():
    out = [procedural_mask(k, np.random.default_rng(0)) for k in ("surgical", "kn95", "cloth")]
    if MTF.is_dir():
        t = load_maskthe_face(MTF)
        out += [t[n] for n in ("surgical", "KN95", "N95", "cloth", "surgical_blue")]
    return out


@pytest.mark.parametrize("idx", range(8))
def test_placement_geometry(idx):
    templates = _templates()
    if idx >= len(templates):
        pytest.skip("MaskTheFace templates absent")
    img, lm = _face()
    framed, flm = FRAMINGS["portrait"](img, lm, np.random.default_rng(idx), DEFAULT_GEOMETRY[0])
    t = templates[idx]
    mouth = flm[[62, 66]].mean(0)
    _, worn = place_mask(framed, flm, t, "worn")
    assert _alpha_at(worn, flm[30]) > 0.9 and _alpha_at(worn, mouth) > 0.9 and _alpha_at(worn, flm[8] - [0, 5]) > 0.5
    assert _alpha_at(worn, flm[37]) < 0.1  # eyes stay visible
    _, under = place_mask(framed, flm, t, "under_nose")
    assert _alpha_at(under, flm[30]) < 0.1 and _alpha_at(under, mouth) > 0.9
    _, chin = place_mask(framed, flm, t, "chin")
    assert _alpha_at(chin, mouth) < 0.1 and _alpha_at(chin, flm[51]) < 0.1 and _alpha_at(chin, flm[30]) < 0.1
    assert _alpha_at(chin, flm[8]) > 0.5


@needs_mtf
def test_maskthe_face_templates_load_and_pick_variants():
    t = load_maskthe_face(MTF)
    assert {"surgical", "surgical_left", "surgical_right", "KN95", "N95", "cloth"} <= set(t)
    assert t["surgical"].rgba.shape[2] == 4 and t["surgical"].anchors.shape == (6, 2)
    pool = mask_pool(t)
    assert "template:gas" not in pool and "template:surgical_left" not in pool and len(pool) >= 8
    img, lm = _face()
    photos = make_person(img, lm, t, np.random.default_rng(0))
    assert set(photos) == {"normal", "mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask"}
    assert all(p.shape == (512, 384, 3) for p in photos.values())
    assert not np.array_equal(photos["mask1"], photos["normal"])


def test_five_different_masks_with_procedural_masks_only():
    img, lm = _face()
    for seed in range(5):
        photos = make_person(img, lm, None, np.random.default_rng(seed))
        masked = [photos[f"mask{i}"] for i in range(1, 6)]
        assert all(not np.array_equal(a, b) for i, a in enumerate(masked) for b in masked[i + 1 :])


def test_external_stage_ids_and_train_only_folds(demo_source, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main
    from pipeline.train.rundata import load_run_data
    from tests.conftest import cli_args

    data = tmp_path / "data"
    shutil.copytree(demo_source, data)
    sets = ["external.max_persons=6", "data.external_cap=5", "data.use_external=true"]
    cfg = make_config(tmp_path, data, *sets)
    summary = run_external(cfg, n_jobs=1, log=lambda m: None, sheet_persons=4)
    assert summary["persons"] == 6 and summary["faces_per_second"] > 0
    from PIL import Image

    with Image.open(tmp_path / "run/external/contact_sheet.png") as sheet:  # a header row, 4 labelled rows
        assert sheet.size == (150 + 96 * 7, 18 + 128 * 4)
    ext = pd.read_csv(tmp_path / "run/external/train/train.csv", dtype=str)
    real = pd.read_csv(data / "train/train.csv", dtype=str)
    assert ext["id"].is_unique and not set(ext["id"]) & set(real["id"]) and not set(ext["path"]) & set(real["path"])
    assert (tmp_path / "run/external/contact_sheet.png").is_file()
    res = CliRunner().invoke(main, cli_args("folds", tmp_path, data, *sets))
    assert res.exit_code == 0, res.output
    folds = pd.read_csv(tmp_path / "run/folds.csv", dtype={"person_id": str})
    ext_rows = folds[folds["source"] == "external"]
    assert ext_rows["person_id"].nunique() == 5 and (ext_rows["fold"] == -1).all()  # capped at 5
    assert (folds.loc[folds["source"] == "train", "fold"] >= 0).all()
    assert ext_rows["age_band"].eq(2).all() and len(ext_rows) == 35
    load_run_data(cfg, log=lambda m: None)  # consistent: accepted
    import dataclasses

    from pipeline.errors import DataError

    off = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, use_external=False))
    with pytest.raises(DataError, match="external photos differ"):
        load_run_data(off, log=lambda m: None)  # folds.csv made with external data, config now without
    folds.loc[folds["source"] == "external", "fold"] = 0
    folds.to_csv(tmp_path / "run/folds.csv", index=False)
    with pytest.raises(DataError, match="external photos must have fold -1"):
        load_run_data(cfg, log=lambda m: None)


@needs_utk
@pytest.mark.skipif(not faces_available(), reason="the `faces` extra is missing")
def test_face_crop_finds_the_face_and_falls_back_to_a_centre_crop(tmp_path):
    from PIL import Image

    from pipeline.data.cache import build_cache, open_cache
    from pipeline.data.images import read_rgb
    from pipeline.faces.crop import FaceCropper

    face = read_rgb(sorted(UTK.glob("70_*"))[0])  # 200x200 tight crop
    portrait = np.full((512, 384, 3), 90, np.uint8)
    portrait[140:340, 92:292] = face  # the face where a competition portrait has it
    crop = FaceCropper(margin=0.3)  # the chip is all face, so its box is as wide as the chip
    (x0, y0, x1, y1), found = crop.box(portrait, 3 / 4)
    assert found and x0 <= 120 and x1 >= 260 and y0 <= 180 and y1 >= 300 and (x1 - x0) < 384
    out, found = crop(portrait, (96, 128))
    assert found and out.shape == (128, 96, 3)
    blank = np.full((512, 384, 3), 128, np.uint8)
    out, found = crop(blank, (96, 128))
    assert not found and out.shape == (128, 96, 3)
    Image.fromarray(portrait).save(tmp_path / "p.jpg")
    Image.fromarray(blank).save(tmp_path / "b.jpg")
    logs = []
    path = build_cache([tmp_path / "p.jpg", tmp_path / "b.jpg"], (96, 128), tmp_path / "cache", "face", crop,
                       n_jobs=1, log=logs.append)
    assert open_cache(path).shape == (2, 128, 96, 3)
    assert any("no face found in 1 of 2 photos" in line for line in logs)
