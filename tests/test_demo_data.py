import numpy as np
import pandas as pd
from PIL import Image

from pipeline.faces.masks import place_mask, procedural_mask
from pipeline.labels import PHOTOS
from pipeline.tools.demo_data import render_portrait, sample_person


def test_layout(demo_source):
    d = demo_source
    t = pd.read_csv(d / "train" / "train.csv", dtype=str)
    assert list(t.columns) == ["id", "gender", "race", "age", "path"] and len(t) == 30
    exts = set()
    for path in t["path"]:
        files = [f for f in (d / "train" / "images" / path).iterdir() if not f.name.startswith("._")]
        assert sorted(f.stem for f in files) == sorted(PHOTOS)
        exts |= {f.suffix for f in files}
    assert ".jpg" in exts and len(exts) >= 2
    assert list((d / "train" / "images").glob("*/._*")), "some macOS junk files are expected"
    info = pd.read_csv(d / "eval" / "info.csv")
    truth = pd.read_csv(d / "eval" / "labels.csv")
    assert list(info.columns) == ["ImageID", "ans"] and (info["ImageID"] == truth["ImageID"]).all()
    assert truth["ans"].between(0, 17).all()
    im = Image.open(d / "eval" / "images" / info["ImageID"][0])
    assert im.size == (384, 512)


def test_same_seed_same_data(tmp_path):
    from pipeline.tools.demo_data import make_demo_data

    a = make_demo_data(tmp_path / "a", persons=6, eval_images=2, seed=5, n_jobs=1)
    b = make_demo_data(tmp_path / "b", persons=6, eval_images=2, seed=5, n_jobs=1)
    assert (a / "train/train.csv").read_text() == (b / "train/train.csv").read_text()
    f = sorted((a / "train/images").glob("*/normal.*"))[0]
    assert f.read_bytes() == (b / f.relative_to(a)).read_bytes()


def test_mask_hides_mouth_and_changes_only_the_lower_face():
    rng = np.random.default_rng(0)
    person = sample_person(rng, 1)
    img, lm = render_portrait(person, np.random.default_rng(1))
    out, alpha = place_mask(img, lm, procedural_mask("surgical", rng), "worn")
    mouth = lm[62].astype(int)
    eye = lm[37].astype(int)
    assert alpha[mouth[1], mouth[0]] > 0.9 and alpha[eye[1], eye[0]] < 0.05
    assert (out[: int(lm[19][1])] == img[: int(lm[19][1])]).all()
