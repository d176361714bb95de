import shutil

import numpy as np
import pandas as pd

from pipeline.checks import load_data, scan_data
from pipeline.data.targets import training_rows
from pipeline.labels import PHOTOS, age_band, decode_label, encode_label
from tests.conftest import make_config


def rename_person(data_dir, index, new_id, gender=None):
    """Give person `index` of train.csv a new id (and folder), as the real set's ids look."""
    csv = data_dir / "train" / "train.csv"
    t = pd.read_csv(csv, dtype=str)
    old = t.loc[index, "path"]
    g = gender or t.loc[index, "gender"]
    new = f"{new_id}_{g}_{t.loc[index, 'race']}_{t.loc[index, 'age']}"
    shutil.move(data_dir / "train" / "images" / old, data_dir / "train" / "images" / new)
    t.loc[index, ["id", "path", "gender"]] = [new_id, new, g]
    t.to_csv(csv, index=False)
    return new


def test_labels_and_bands():
    assert list(age_band([18, 29, 30, 59, 60, 90])) == [0, 0, 1, 1, 2, 2]
    assert encode_label("wear", "male", 0) == 0 and encode_label("normal", "female", 2) == 17
    assert encode_label("incorrect", "female", 1) == 10
    m, g, a = decode_label(np.arange(18))
    assert list(m * 6 + g * 3 + a) == list(range(18))


def test_table_has_one_row_per_photo(data_dir, tmp_path):
    cfg = make_config(tmp_path, data_dir)
    df, evals, report = load_data(cfg)
    assert len(df) == 30 * 7 and df["person_id"].nunique() == 30
    assert list(df.columns[:4]) == ["image_id", "path", "person_id", "gender"]
    assert set(df["source"]) == {"train"}
    # the label is mask*6 + gender*3 + band for every row
    m = df["mask"].map({"wear": 0, "incorrect": 1, "normal": 2})
    g = (df["gender"] == "female").astype(int)
    assert (df["label"] == m * 6 + g * 3 + df["age_band"]).all()
    per_person = df.groupby("person_id")["mask"].apply(lambda s: sorted(s.value_counts().tolist()))
    assert all(counts == [1, 1, 5] for counts in per_person)
    assert len(evals) == 12 and not report.problems


def test_mixed_extensions_and_junk(data_dir, tmp_path):
    person = next((data_dir / "train" / "images").iterdir())
    for f in list(person.iterdir()):
        if not f.name.startswith("."):
            f.unlink()
    # one person with all three extensions, in upper and lower case, plus junk files
    exts = [".jpg", ".JPEG", ".png", ".jpeg", ".PNG", ".jpg", ".png"]
    from PIL import Image

    for photo, ext in zip(PHOTOS, exts):
        Image.new("RGB", (384, 512), (100, 100, 100)).save(person / f"{photo}{ext}", format="PNG" if "png" in ext.lower() else "JPEG")
    (person / "._mask1.jpg").write_bytes(b"junk")
    (person / ".DS_Store").write_bytes(b"junk")
    (person / "Thumbs.db").write_bytes(b"junk")
    cfg = make_config(tmp_path, data_dir)
    df, evals, report = load_data(cfg)
    scan_data(cfg.data_dir, cfg.data.cache_size, df, evals, report)
    assert not report.problems
    rows = df[df["person_id"] == person.name]
    assert len(rows) == 7 and {p.split(".")[-1] for p in rows["path"]} == {"jpg", "JPEG", "png", "jpeg", "PNG"}
    assert sum(person.name in j for j in report.junk) >= 3


def test_published_fixes_applied_and_reported(data_dir, tmp_path):
    rename_person(data_dir, 0, "001498-1", gender="male")
    rename_person(data_dir, 1, "006361", gender="female")
    swapped = rename_person(data_dir, 2, "000020")
    cfg = make_config(tmp_path, data_dir)
    df, _, report = load_data(cfg)
    assert set(df.loc[df["person_id"].str.startswith("001498-1"), "gender"]) == {"female"}
    assert set(df.loc[df["person_id"].str.startswith("006361"), "gender"]) == {"male"}
    rows = df[df["person_id"] == swapped].set_index("photo")
    assert rows.loc["incorrect_mask", "mask"] == "normal" and rows.loc["normal", "mask"] == "incorrect"
    assert len(report.fixes) == 3
    # labels follow the fixed values
    fem = df[df["person_id"].str.startswith("001498-1")]
    assert (fem["label"] % 6 // 3 == 1).all()


def test_fix_not_applied_when_old_value_differs(data_dir, tmp_path):
    rename_person(data_dir, 0, "004432", gender="female")  # already female: the fix has nothing to do
    cfg = make_config(tmp_path, data_dir)
    df, _, report = load_data(cfg)
    assert not report.fixes and any("already female" in n for n in report.notes)


def test_age_cuts_from_config_and_drop_near_cut(data_dir, tmp_path):
    cfg = make_config(tmp_path, data_dir, "data.age_cuts=[25, 50]", "data.drop_near_cut=3")
    df, _, _ = load_data(cfg)
    assert (df["age_band"] == age_band(df["age"], [25, 50])).all()
    keep = training_rows(df, cfg.data)
    dropped = df.loc[~keep, "age"]
    assert set(dropped) <= {22, 23, 24, 47, 48, 49}
    assert ((df["age"].between(22, 24) | df["age"].between(47, 49)) == ~keep).all()


def test_repeated_id_warns_and_repeated_path_fails(data_dir, tmp_path):
    csv = data_dir / "train" / "train.csv"
    t = pd.read_csv(csv, dtype=str)
    t.loc[1, "id"] = t.loc[0, "id"]
    t.to_csv(csv, index=False)
    cfg = make_config(tmp_path, data_dir)
    _, _, report = load_data(cfg)
    assert not report.problems and any("is repeated" in w for w in report.warnings)
    t = pd.concat([t, t.iloc[[2]]])
    t.to_csv(csv, index=False)
    _, _, report = load_data(cfg)
    assert any(f"path '{t.iloc[2]['path']}' appears in more than one row" in str(p) for p in report.problems)


def test_train_only_data(data_dir, tmp_path):
    shutil.rmtree(data_dir / "eval")
    cfg = make_config(tmp_path, data_dir)
    df, evals, report = load_data(cfg)
    assert evals is None and not report.problems and any("nothing to submit" in n for n in report.notes)
