"""External faces framed like competition photos, the domain probe, and the face detectors with their box cache."""
from __future__ import annotations

import glob

import numpy as np
import pytest

from external_data.geometry import wall_strip
from external_data.persons import FRAMINGS, make_person
from external_data.probe import probe_auc, region_statistics
from pipeline.data.images import read_rgb
from pipeline.layout import masked_detector
from pipeline.tools.demo_data import render_portrait, sample_person
from tests.conftest import SHARED_DATA, make_config

UTK = SHARED_DATA / "utkface"
MTF = SHARED_DATA / "maskthe-face"


def faces_available():
    from pipeline.faces import landmarks as faces

    return faces.available()


needs_faces = pytest.mark.skipif(not faces_available(), reason="the `faces` extra is missing")
needs_utk = pytest.mark.skipif(not UTK.is_dir(), reason="the optional real-face test data (utkface) is absent")


def _tight_face(seed=3):
    """A demo face cropped tight, as outside face sets come, with its landmarks."""
    img, lm = render_portrait(sample_person(np.random.default_rng(seed), 1, band=2), np.random.default_rng(seed))
    x0, y0 = lm[:, 0].min() - 30, lm[:, 1].min() - 90
    return img[int(y0) : int(y0) + 260, int(x0) : int(x0) + 240].copy(), lm - [int(x0), int(y0)]


def test_portrait_framing_puts_the_face_where_competition_faces_are_on_a_competition_wall():
    img, lm = _tight_face()
    wall = wall_strip(np.dstack([np.full((512, 384), c, np.uint8) for c in (200, 150, 90)]))
    target = np.array([170.0, 240.0, 180.0])
    rng = np.random.default_rng(0)
    framed, flm = FRAMINGS["portrait"](img, lm, rng, target, wall[None])
    assert framed.shape == (512, 384, 3)
    assert np.allclose(flm[27:36].mean(axis=0), target[:2], atol=1) and abs(np.linalg.norm(flm[16] - flm[0]) - 180) < 1
    # Around the head, the competition wall (up to the sensor noise), not a blurred copy of the face photo.
    corners = np.concatenate([framed[:40, :40].reshape(-1, 3), framed[:40, -40:].reshape(-1, 3)])
    assert np.abs(corners.mean(axis=0) - [200, 150, 90]).max() < 3
    blurred, blm = FRAMINGS["blur"](img, lm, np.random.default_rng(0), target)
    assert np.abs(blurred[:40, :40].reshape(-1, 3).mean(axis=0) - [200, 150, 90]).max() > 20
    assert np.allclose(blm[27:36].mean(axis=0), target[:2], atol=1) and abs(np.linalg.norm(blm[16] - blm[0]) - 180) < 1
    # The face itself is the photo's, sharp: the nose area matches the source scaled by the same factor.
    photos = make_person(img, lm, None, np.random.default_rng(1), "portrait", target[None], wall[None])
    assert set(photos) == {"normal", "mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask"}


def test_probe_separates_what_differs_and_not_what_does_not(demo_source):
    files = sorted(glob.glob(str(demo_source / "train/images/*/[mn]*.*")))
    stats = np.stack([region_statistics(read_rgb(f)).ravel() for f in files])
    persons = np.array([f.split("/")[-2] for f in files])
    same = np.array([int(p[-1]) % 2 for p in persons])  # two halves of one source's persons: nothing to tell
    assert abs(probe_auc(stats, same, persons) - 0.5) < 0.25
    # The same photos with the frame blurred: the probe finds it at once.
    import cv2

    def blur_frame(f):
        img = read_rgb(f)
        out = cv2.GaussianBlur(img, (0, 0), 12)
        out[128:384, 96:288] = img[128:384, 96:288]
        return out

    tell = np.stack([region_statistics(blur_frame(f) if y else read_rgb(f)).ravel() for y, f in zip(same, files)])
    assert probe_auc(tell, same, persons) > 0.9


@needs_faces
def test_box_cache_runs_each_detector_once_per_photo(tmp_path, monkeypatch):
    from PIL import Image

    from pipeline.faces import boxes

    face = read_rgb(sorted(UTK.glob("70_*"))[0]) if UTK.is_dir() else _tight_face()[0][:200, :200]
    portrait = np.full((512, 384, 3), 90, np.uint8)
    portrait[140:340, 92:292] = face
    Image.fromarray(portrait).save(tmp_path / "p.jpg")
    Image.fromarray(np.full((512, 384, 3), 128, np.uint8)).save(tmp_path / "b.jpg")
    files = [tmp_path / "p.jpg", tmp_path / "b.jpg"]
    calls = []
    real = boxes.detect
    hog_finds_it = real(read_rgb(tmp_path / "p.jpg"), "hog") is not None  # a real face: yes; the drawn one: not always
    monkeypatch.setattr(boxes, "detect", lambda img, name, path=None: calls.append(name) or real(img, name, path))
    monkeypatch.setattr(boxes, "Parallel", lambda n_jobs, return_as: (lambda jobs: (f(*a) for f, a, _ in jobs)))
    found = boxes.face_boxes(files, "hog+cnn", tmp_path / "cache", tmp_path, log=lambda m: None)
    assert found[0] is not None and found[1] is None
    assert calls == ["hog", "hog", "cnn"] if hog_finds_it else ["hog", "hog", "cnn", "cnn"]  # CNN where HOG found none
    calls.clear()
    assert boxes.face_boxes(files, "hog+cnn", tmp_path / "cache", tmp_path, log=lambda m: None) == found
    assert calls == []  # cached by content, per detector
    with pytest.raises(FileNotFoundError, match="run `maskfold external`"):
        boxes.face_boxes(files, "hog+masked", tmp_path / "cache", tmp_path, log=lambda m: None)


@needs_utk
@needs_faces
@pytest.mark.skipif(not MTF.is_dir(), reason="the optional real-face test data (maskthe-face) is absent")
def test_masked_face_detector_finds_98_percent_of_masked_utkface_faces(demo_source, tmp_path, capsys):
    """Trained on 60+ UTKFace pseudo-persons, judged on other people (ages 30-59) with masks put on the same way."""
    from external_data.probe import run_probe
    from external_data.run import run_external
    from pipeline.faces import boxes
    from pipeline.labels import PHOTOS, photo_mask

    sets = ["external.source=utkface", f"external.path={UTK}", f"external.templates={MTF}", "external.landmarks=dlib",
            "external.balance_gender=true"]
    trained = make_config(tmp_path / "a", demo_source, *sets, "external.max_persons=60")
    summary = run_external(trained, n_jobs=2, log=print)
    assert summary["masked_face_detector"] and summary["framing"] == "blur"  # the default
    probe = run_probe(trained, log=print)
    assert all(0 <= probe[m]["auc"] <= 1 for m in ("wear", "incorrect", "normal"))
    held_out = make_config(tmp_path / "b", demo_source, *sets, "external.min_age=30", "external.max_age=59",
                           "external.max_persons=20")
    run_external(held_out, n_jobs=2, log=lambda m: None)
    model = str(masked_detector(trained.run_dir))
    hits = {"hog": {}, "hog+masked": {}}
    for person in sorted(glob.glob(f"{held_out.run_dir}/external/train/images/*")):
        truth = boxes.detect(read_rgb(f"{person}/normal.jpg"), "hog")  # same framing in all seven photos
        if truth is None:
            continue
        for photo in PHOTOS:
            img = read_rgb(f"{person}/{photo}.jpg")
            hog = boxes.detect(img, "hog")
            found = {"hog": hog, "hog+masked": hog if hog is not None else boxes.detect(img, "masked", model)}
            for chain, box in found.items():
                ok = box is not None and box[0] < (truth[0] + truth[2]) / 2 < box[2] and \
                    box[1] < (truth[1] + truth[3]) / 2 < box[3]
                hits[chain].setdefault(photo_mask(photo), []).append(ok)
    with capsys.disabled():
        for chain, by_mask in hits.items():
            print(f"\n{chain}: " + " · ".join(f"{m} {np.mean(v):.1%} of {len(v)}" for m, v in by_mask.items()))
    assert np.mean(hits["hog+masked"]["wear"]) >= 0.98 and np.mean(hits["hog+masked"]["incorrect"]) >= 0.98
    assert np.mean(hits["hog"]["wear"]) < 0.6  # what the trained detector is for
