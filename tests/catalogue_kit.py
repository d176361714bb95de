"""What every catalogue test file shares: running a command on test data, and the clean-exit check."""
import os

import pandas as pd
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import cli_args


def invoke(command, tmp_path, data_dir, *sets, extra=()):
    return CliRunner().invoke(main, cli_args(command, tmp_path, data_dir, *sets) + list(extra))


def assert_message(res, *parts, code=1):
    """A clean exit with the expected words: never an exception other than the exit itself."""
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    for p in parts:
        assert p in res.output, res.output
    shown = [line for line in res.output.splitlines() if parts and parts[0] in line]
    print(f"\n[{os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}] {shown[0] if shown else ''}")


def person(data_dir, i=0):
    t = pd.read_csv(data_dir / "train" / "train.csv", dtype=str)
    return data_dir / "train" / "images" / t.loc[i, "path"], t


def photo(folder, name):
    return next(f for f in folder.iterdir() if f.stem == name and not f.name.startswith("."))
