"""How a command ends on an error: the user's to fix is one line; anything else is a bug, one line and the hint to
see its traceback, which --debug (or MASKFOLD_DEBUG=1) prints."""
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.commands.failures import DEBUG_HINT

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")


def _broken(*a, **kw):
    raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")


def test_an_error_the_user_can_fix_is_one_line(tmp_path):
    res = CliRunner().invoke(main, ["check-data", "--config", DEMO, "--set", f"run_dir={tmp_path}",
                                    "--set", "train.epochs=0"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.output.strip().splitlines() == ["Error: --set train.epochs=0: 'train.epochs' is 0; use at least 1"]


@pytest.mark.parametrize("how", ["plain", "--debug", "MASKFOLD_DEBUG=1"])
def test_an_internal_error_gives_the_hint_or_with_debug_the_traceback(tmp_path, monkeypatch, how):
    import pipeline.checks

    monkeypatch.setattr(pipeline.checks, "load_data", _broken)
    monkeypatch.delenv("MASKFOLD_DEBUG", raising=False)
    if how == "MASKFOLD_DEBUG=1":
        monkeypatch.setenv("MASKFOLD_DEBUG", "1")
    args = ["check-data", "--config", DEMO, "--set", f"run_dir={tmp_path}"]
    res = CliRunner().invoke(main, ["--debug", *args] if how == "--debug" else args)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    last = "Error: ValueError: operands could not be broadcast together with shapes (3,) (4,)"
    if how == "plain":
        assert res.output.strip().splitlines() == [last, DEBUG_HINT]
    else:
        assert "Traceback (most recent call last)" in res.output and "in _broken" in res.output
        assert res.output.strip().splitlines()[-1] == last and DEBUG_HINT not in res.output
    assert (tmp_path / "log.txt").read_text().splitlines()[-1].endswith(f"failed: {last.removeprefix('Error: ')}")


def test_a_command_without_a_config_reports_a_bug_the_same_way(tmp_path, monkeypatch):
    import pipeline.data.cache

    monkeypatch.setattr(pipeline.data.cache, "list_caches", _broken)
    monkeypatch.delenv("MASKFOLD_DEBUG", raising=False)
    res = CliRunner().invoke(main, ["cache", "--dir", str(tmp_path)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.output.strip().splitlines()[-1] == DEBUG_HINT and "Traceback" not in res.output


def test_extra_photos_asked_for_but_never_made_name_the_command_that_makes_them(data_dir, tmp_path):
    from tests.conftest import TINY, cli_args

    res = CliRunner().invoke(main, cli_args("folds", tmp_path, data_dir, *TINY, "data.use_external=true"))
    assert res.exit_code != 0 and "data.use_external is on but there is no external data" in res.output
    assert "run `maskfold external` with this config first" in res.output and "None" not in res.output, res.output


@pytest.mark.parametrize("raised, told", [
    (ValueError("shapes (3,) (4,)\nmore lines"), "ValueError: shapes (3,) (4,) ..."),
    (OSError(28, "No space left on device"), "no space left on {run}; free some space there"),
    ("data", "1 problem(s); run `maskfold check-data` for the full report:\n  folds.csv: changed"),
])
def test_a_failed_job_keeps_the_words_a_command_would_use(tmp_path, monkeypatch, raised, told):
    """run_one turns a job's exception into its result row by the command runner's rule (pipeline.outcome.told)."""
    import pipeline.train.worker as worker
    from pipeline.config import Config
    from pipeline.errors import DataError, Problem
    from pipeline.train.job import Job, RunOptions

    if raised == "data":
        raised = DataError([Problem("folds.csv", "changed")])

    def fails(*a, **kw):
        raise raised
    monkeypatch.setattr(worker, "run_job", fails)
    cfg = Config(run_dir=str(tmp_path))
    job = Job("test_resnet", 0, epochs=1, seed=0, identity="x", folder=tmp_path / "test_resnet" / "fold0")
    result = worker.run_one(cfg, job, None, RunOptions(progress=False))
    assert result.status == "failed" and result.error.startswith(told.format(run=tmp_path)), result.error
