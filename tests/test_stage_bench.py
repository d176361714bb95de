"""`maskfold bench --stages` builds its workload and times the stages as child processes (the figures are
machine-dependent: only their presence and sanity are asserted). The ensemble's one-blend variants are the same
command with other flags (their arguments are checked), so the timed run skips them: each child costs seconds of
imports alone."""
import json

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.tools.stage_bench import STAGES
from tests.conftest import ROOT

TIMED = [s for s in STAGES if not s.startswith("ensemble") or s == "ensemble (every blend)"]


def test_stage_bench_times_every_stage_and_writes_json(tmp_path):
    out = tmp_path / "stages.json"
    sets = ["folds.n_splits=2", "data.cache_size=[48,64]", "train.img_size=[40,48]",
            "backbones=[{name: test_resnet, lr: 0.003}, {name: test_efficientnet, lr: 0.003}]",
            f"data.label_fixes={ROOT / 'configs' / 'label_fixes.csv'}", f"run_dir={tmp_path / 'run'}"]
    args = ["bench", "--stages", "--config", str(ROOT / "configs" / "demo.yaml"),
            *[w for s in sets for w in ("--set", s)],
            "--workload", str(tmp_path / "workload"), "--persons", "24", "--eval-images", "16", "--members", "3",
            "--backbones-per-run", "2", "--out", str(out), *[w for s in TIMED for w in ("--stage", s)]]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert [s["persons"] for s in result["sizes"]] == [24]
    for size in result["sizes"]:
        assert size["train_photos"] == size["persons"] * 7 and size["members"] == 3
        assert list(size["stages"]) == list(TIMED)
        for stage, row in size["stages"].items():
            assert row["exit"] == 0 and not row["timed_out"], (stage, row)
            assert row["seconds"] > 0 and row["peak_mib"] > 0, (stage, row)
            assert row["warnings"] == 0, (stage, (tmp_path / "workload").glob("*/logs"))
    # two runs (two members and one) were blended; the blend that pseudo read is the one with every kind
    root = next((tmp_path / "workload").glob("24p-*"))
    weights = json.loads((root / "runs" / "ensemble-every-blend" / "ensemble" / "weights.json").read_text())
    assert len(weights["members"]) == 3 and {"stacking", "selection", "weights"} <= {
        k.split()[0] for k in weights["honest_f1"]}
    assert "| ensemble (every blend) |" in result["table"] and "| predict |" in result["table"]
    assert (root / "runs" / "pseudo" / "pseudo" / "summary.json").is_file()


def test_each_one_blend_ensemble_turns_on_its_blend_alone(tmp_path):
    from pipeline.tools.stage_bench import BLEND_FLAGS, ENSEMBLES, stage_command

    for stage, only in ENSEMBLES.items():
        args = stage_command(stage, tmp_path)
        sets = dict(a.split("=") for a in args[args.index("ensemble"):] if "=" in a and a.startswith("ensemble."))
        assert args[:3] == ["-m", "pipeline.cli", "ensemble"], args
        wanted = {key: "true" if k == only else "false" for k, key in BLEND_FLAGS.items()} if only else {}
        assert sets == wanted, (stage, sets)
