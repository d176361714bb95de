"""Every bad-input case: check-data exits 1 and names the file and the problem."""
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from tests.conftest import cli_args


def run_check(data_dir, tmp_path):
    return CliRunner().invoke(main, cli_args("check-data", tmp_path, data_dir))


def first_person(data_dir):
    t = pd.read_csv(data_dir / "train" / "train.csv", dtype=str)
    return data_dir / "train" / "images" / t.loc[0, "path"], t


def photo(folder, name):
    return next(f for f in folder.iterdir() if f.stem == name and not f.name.startswith("."))


def test_clean_demo_set_passes(data_dir, tmp_path):
    res = run_check(data_dir, tmp_path)
    assert res.exit_code == 0, res.output
    assert "problems: 0" in res.output and "persons: 30" in res.output and "junk files skipped" in res.output


def _missing_csv(d):
    (d / "train" / "train.csv").unlink()
    return "train.csv", "train.csv not found"


def _missing_column(d):
    t = pd.read_csv(d / "train/train.csv", dtype=str).drop(columns=["age"])
    t.to_csv(d / "train/train.csv", index=False)
    return "train.csv", "missing column(s) age"


def _missing_folder(d):
    folder, _ = first_person(d)
    shutil.rmtree(folder)
    return folder.name, "person folder for"


def _missing_photo(d):
    folder, _ = first_person(d)
    photo(folder, "normal").unlink()
    return folder.name, "missing photo(s) normal"


def _extra_photo(d):
    folder, _ = first_person(d)
    shutil.copy(photo(folder, "mask1"), folder / "mask6.jpg")
    return "mask6.jpg", "extra photo"


def _repeated_path(d):
    t = pd.read_csv(d / "train/train.csv", dtype=str)
    pd.concat([t, t.iloc[[3]]]).to_csv(d / "train/train.csv", index=False)
    return "train.csv", f"path '{t.loc[3, 'path']}' appears in more than one row"


def _set_cell(d, column, value):
    t = pd.read_csv(d / "train/train.csv", dtype=str)
    t.loc[4, column] = value
    t.to_csv(d / "train/train.csv", index=False)
    return "train.csv line 6"


def _unknown_gender(d):
    return _set_cell(d, "gender", "unknown"), "unknown gender 'unknown'"


def _non_integer_age(d):
    return _set_cell(d, "age", "forty"), "age 'forty' is not a whole number"


def _out_of_range_age(d):
    return _set_cell(d, "age", "250"), "age 250 is out of range"


def _zero_byte(d):
    folder, _ = first_person(d)
    f = photo(folder, "mask2")
    f.write_bytes(b"")
    return f.name, "empty file (0 bytes)"


def _truncated(d):
    folder, _ = first_person(d)
    f = photo(folder, "mask3")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    return f.name, "truncated"


def _not_an_image(d):
    folder, _ = first_person(d)
    f = photo(folder, "mask4")
    f.write_bytes(b"this is a text file, not a photo" * 10)
    return f.name, "not an image"


def _missing_eval_image(d):
    f = next((d / "eval" / "images").iterdir())
    f.unlink()
    return f.name, "eval photo listed in info.csv is missing"


def _eval_image_not_listed(d):
    f = next((d / "eval" / "images").iterdir())
    shutil.copy(f, d / "eval" / "images" / "stray.jpg")
    return "stray.jpg", "eval photo not listed in info.csv"


CASES = [_missing_csv, _missing_column, _missing_folder, _missing_photo, _extra_photo, _repeated_path,
         _unknown_gender, _non_integer_age, _out_of_range_age, _zero_byte, _truncated, _not_an_image,
         _missing_eval_image, _eval_image_not_listed]


@pytest.mark.parametrize("inject", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_bad_input_is_named(data_dir, tmp_path, inject):
    file, message = inject(data_dir)
    res = run_check(data_dir, tmp_path)
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if message in ln]
    assert lines, res.output
    assert file in lines[0]


def test_odd_modes_are_converted_and_counted(data_dir, tmp_path):
    folder, _ = first_person(data_dir)
    for name, mode in [("mask1", "L"), ("mask2", "CMYK"), ("mask3", "RGBA")]:
        f = photo(folder, name)
        im = Image.open(f).convert(mode)
        f.unlink()
        im.save(folder / f"{name}{'.png' if mode == 'RGBA' else '.jpg'}")
    res = run_check(data_dir, tmp_path)
    assert res.exit_code == 0, res.output
    assert "converted to RGB: CMYK 1, RGBA 1, grayscale 1" in res.output
