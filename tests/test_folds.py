import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from folds.make import assign_folds, check_folds
from pipeline.checks import load_data
from pipeline.cli import main
from tests.conftest import cli_args, make_config


def synthetic_table(persons=600, seed=0):
    """A contract-shaped table with the real class balance, without photos (folds never read them)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(persons):
        gender = "female" if rng.random() < 0.61 else "male"
        band = rng.choice(3, p=[0.47, 0.46, 0.07])
        for photo, mask in [("mask1", "wear"), ("mask2", "wear"), ("mask3", "wear"), ("mask4", "wear"),
                            ("mask5", "wear"), ("incorrect_mask", "incorrect"), ("normal", "normal")]:
            label = ["wear", "incorrect", "normal"].index(mask) * 6 + (gender == "female") * 3 + band
            rows.append({"image_id": f"{p:06d}/{photo}", "person_id": f"{p:06d}", "gender": gender,
                         "age_band": band, "mask": mask, "label": label, "source": "train"})
    return pd.DataFrame(rows)


def test_no_person_in_two_folds_and_balanced():
    df = assign_folds(synthetic_table(), n_splits=5, seed=3)
    assert df.groupby("person_id")["fold"].nunique().max() == 1
    whole = df["label"].value_counts(normalize=True)
    for k in range(5):
        part = df.loc[df["fold"] == k, "label"].value_counts(normalize=True).reindex(whole.index, fill_value=0)
        assert np.abs(part - whole).max() < 0.02, k
    sizes = df.groupby("fold")["person_id"].nunique()
    assert sizes.max() - sizes.min() <= 2


def test_deterministic_and_order_independent():
    df = synthetic_table()
    a = assign_folds(df, 5, seed=7)
    b = assign_folds(df.sample(frac=1, random_state=1), 5, seed=7)
    assert a.to_csv(index=False) == b.to_csv(index=False)
    c = assign_folds(df, 5, seed=8)
    assert not (a["fold"] == c["fold"]).all()


def test_external_rows_get_fold_minus_one():
    df = synthetic_table(100)
    ext = synthetic_table(10, seed=5).assign(source="external")
    ext["person_id"] = "ext" + ext["person_id"]
    ext["image_id"] = "ext" + ext["image_id"]
    out = assign_folds(pd.concat([df, ext]), 3, seed=0)
    assert (out.loc[out["source"] == "external", "fold"] == -1).all()
    assert (out.loc[out["source"] != "external", "fold"] >= 0).all()
    bad = out.copy()
    bad.loc[bad["source"] == "external", "fold"] = 0
    with pytest.raises(AssertionError, match="external"):
        check_folds(bad)


def test_folds_command_writes_byte_identical_csv(data_dir, tmp_path):
    args = cli_args("folds", tmp_path, data_dir)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    first = (tmp_path / "run" / "folds.csv").read_bytes()
    assert (tmp_path / "run" / "config.yaml").exists()
    CliRunner().invoke(main, args)
    assert (tmp_path / "run" / "folds.csv").read_bytes() == first
    df = pd.read_csv(tmp_path / "run" / "folds.csv")
    cfg = make_config(tmp_path, data_dir)
    table, _, _ = load_data(cfg)
    assert set(df.columns) == set(table.columns) | {"fold"} and len(df) == len(table)
    assert sorted(df["fold"].unique()) == [0, 1, 2]
