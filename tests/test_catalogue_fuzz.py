"""Faults found by the fuzz test (tests/test_fuzz.py) beyond those of the reliability catalogue: one test each, in
the style of tests/test_catalogue.py (a non-zero exit, no traceback, the file or key named with the fix)."""
import os
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.layout import read_folds
from tests.conftest import ROOT
from tests.test_catalogue import assert_message, invoke, person, photo


@pytest.mark.parametrize("key", ["data_dir", "run_dir", "cache_dir", "data.label_fixes"])
def test_f1_nul_character_in_a_path_is_refused_naming_the_key(data_dir, tmp_path, key):
    # was: ValueError "embedded null byte" escaping with a traceback, no key named
    for command in ("check-data", "folds"):
        res = invoke(command, tmp_path, data_dir, f'{key}="runs\\0x"')
        assert_message(res, f"'{key}' holds a NUL character")


@pytest.mark.parametrize("key", ["run_dir", "data_dir", "cache_dir"])
@pytest.mark.parametrize("value", ["''", "' '"], ids=["empty", "blank"])
def test_f2_empty_run_dir_is_refused_not_the_working_folder(data_dir, tmp_path, monkeypatch, key, value):
    # was: run_dir '' accepted, folds.csv, log.txt and config.yaml written into the working folder
    shutil.copytree(ROOT / "configs", tmp_path / "configs")  # the demo config's base, read from either folder
    monkeypatch.chdir(tmp_path)
    res = invoke("folds", tmp_path, data_dir, f"{key}={value}")
    assert_message(res, f"'{key}' is empty")
    assert not (tmp_path / "folds.csv").exists() and not (tmp_path / "log.txt").exists()


def test_f3_person_folder_linked_under_a_second_name_is_refused(data_dir, tmp_path):
    # was: exit 0, the same 7 photos under two persons, trained on in one fold and validated in another
    folder, table = person(data_dir, 0)
    (folder.parent / "alias").symlink_to(folder.name)
    extra = table.iloc[[0]].assign(id="999999", path="alias")
    pd.concat([table, extra]).to_csv(data_dir / "train" / "train.csv", index=False)
    for command in ("check-data", "folds"):
        res = invoke(command, tmp_path, data_dir)
        assert_message(res, "alias: photos that are the same files as photos of person " + folder.name,
                       "replace the links with the photos")
    assert not (tmp_path / "run" / "folds.csv").exists()


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_f4_photo_linked_from_another_person_or_photo_is_refused(data_dir, tmp_path, link):
    # was: exit 0 with one photo under two labels (another person's, or another mask state of the same person)
    a, _ = person(data_dir, 0)
    b, _ = person(data_dir, 1)
    for target, source, whose in [(photo(b, "mask1"), photo(a, "mask2"), f"person {a.name}"),
                                  (photo(b, "normal"), photo(b, "incorrect_mask"), "this person")]:
        target.unlink()
        (os.symlink if link == "symlink" else os.link)(source, target)
        res = invoke("check-data", tmp_path, data_dir)
        assert_message(res, f"{b.name}: photos that are the same files as", whose, f"{target.stem} = ")
        target.unlink()
        shutil.copy(source, target)


@pytest.mark.parametrize("nest", ["[]", "{a: }"], ids=["lists", "mappings"])
def test_f5_values_nested_thousands_deep_are_refused_naming_the_file(tmp_path, nest):
    # was: RecursionError from PyYAML's composer, with a traceback
    config = tmp_path / "deep.yaml"
    open_, close = nest[:-1], nest[-1]
    config.write_text(f"extends: {ROOT / 'configs' / 'demo.yaml'}\nseed: {open_ * 3000}{'1' if nest != '[]' else ''}"
                      f"{close * 3000}\n")
    res = CliRunner().invoke(main, ["check-data", "--config", str(config)])
    assert_message(res, f"{config}: values nested too deeply")


def test_f6_person_folder_named_na_is_read_back_as_written(data_dir, tmp_path):
    # was: folds.csv read by training and the ensemble with pandas' missing-value words: person NA became NaN
    folder, table = person(data_dir, 0)
    folder.rename(folder.parent / "NA")
    table.loc[0, "path"] = "NA"
    table.to_csv(data_dir / "train" / "train.csv", index=False)
    assert_message(invoke("folds", tmp_path, data_dir), "wrote", code=0)
    folds, _ = read_folds(tmp_path / "run")
    assert (folds["person_id"] == "NA").sum() == 7 and not folds["person_id"].isna().any()
    assert folds["image_id"].str.startswith("NA/").sum() == 7


@pytest.mark.parametrize("kind", ["dangling", "looping"])
def test_f7_eval_photo_that_is_a_broken_link_is_refused(data_dir, tmp_path, kind):
    # was: exit 0 from check-data and folds; the link was left out of the scan because it does not exist
    info = pd.read_csv(data_dir / "eval" / "info.csv")
    eval_photo = data_dir / "eval" / "images" / info.loc[0, "ImageID"]
    eval_photo.unlink()
    eval_photo.symlink_to(tmp_path / "gone.jpg" if kind == "dangling" else eval_photo)
    for command in ("check-data", "folds"):
        assert_message(invoke(command, tmp_path, data_dir), f"{eval_photo}: eval photo is a broken or looping link")
