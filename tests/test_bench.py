"""`maskfold bench` runs end to end and reports every figure (values are machine-dependent: not asserted)."""
import json

from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import TINY, cli_args, tiny_config


def test_bench_prints_both_ratios_and_writes_json(data_dir, tmp_path):
    tiny_config(tmp_path, data_dir)  # folds.csv
    out = tmp_path / "bench.json"
    args = cli_args("bench", tmp_path, data_dir, *TINY, "train.max_steps_per_epoch=4") + [
        "--rounds", "1", "--out", str(out), "--device", "cpu"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "loader (1 process)" in res.output and "ratio" in res.output and "whole loop" in res.output
    result = json.loads(out.read_text())
    assert result["loader_jpeg"] > 0 and result["loader_cache"] > 0 and result["loader_ratio"] > 0
    row = result["backbones"]["test_resnet"]
    for key in ("step_naive", "step_tuned", "step_ratio", "inference", "whole_loop"):
        assert row[key] > 0, key
    assert row["limited_by"] in ("loader", "model step")
