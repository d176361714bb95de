"""The catalogue, continued: the last faults a hostile new user found (values accepted in silence, messages that
sent the user the wrong way, an interrupt reported as the opposite of what it did), and tracking that must fail
before training, not after. One test per fault, named after it."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.io import file_lock
from pipeline.layout import job_lock, pair_dir, weights_json
from tests.catalogue_kit import assert_message, invoke
from tests.conftest import ROOT, TINY, cli_args
from tests.test_catalogue_22a import finished, read_only, run_copy  # noqa: F401 - finished: the tiny run

def predict(run, images, out):
    return CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out", str(out)])


# ---------------------------------------------------------------- 1-4: numbers accepted in silence


def test_34_01_negative_drop_near_cut_is_refused_at_load(data_dir, tmp_path):
    for command in ("check-data", "folds", "train-all"):
        assert_message(invoke(command, tmp_path, data_dir, *TINY, "data.drop_near_cut=-3"),
                       "'data.drop_near_cut' is -3", "0 or more")
    assert not (tmp_path / "run" / "folds.csv").exists()


def test_34_02_negative_warmup_is_refused(data_dir, tmp_path):
    assert_message(invoke("train-all", tmp_path, data_dir, *TINY, "train.warmup_epochs=-1"),
                   "'train.warmup_epochs' is -1", "0 (no warm-up) or more")
    assert not (tmp_path / "run" / "models").exists()


def test_34_03_patience_zero_is_refused_and_null_switches_it_off(data_dir, tmp_path):
    res = invoke("check-data", tmp_path, data_dir, *TINY, "train.patience=0")
    assert_message(res, "'train.patience' is 0", "or null to switch early stopping off")
    assert load_config(ROOT / "configs" / "demo.yaml", ["train.patience=null"]).train.patience is None


@pytest.mark.parametrize("value", ["-0.1", "0"])
def test_34_04_lr_not_above_zero_is_refused_naming_train_lr(data_dir, tmp_path, value):
    # TINY's backbone sets its own lr, as configs/demo.yaml's do: train.lr is refused all the same
    res = invoke("check-data", tmp_path, data_dir, *TINY, f"train.lr={value}")
    assert_message(res, f"'train.lr' is {float(value)}", "above 0")
    assert "min_lr" not in res.output
    res = invoke("check-data", tmp_path, data_dir, *TINY, f"backbones.0.lr={value}")
    assert_message(res, f"'backbones.0.lr' is {float(value)}", "above 0")


def test_34_01_to_04_every_number_of_the_schema_refuses_a_negative_naming_its_key():
    """The fuzz test's kind (cfg_negative_number) draws one key a case; here every key, once."""
    from tests.fuzz_config import _named_key, numeric_keys

    demo = ROOT / "configs" / "demo.yaml"
    keys = list(numeric_keys(load_config(demo).to_dict()))
    assert len(keys) > 60, keys  # the whole schema's numbers, not a few
    for key, tp in keys:
        value = -1 if tp is int else -0.5
        with pytest.raises(ConfigError, match=f"'{_named_key(key)}"):
            load_config(demo, [f"{key}={value}"])


@pytest.mark.parametrize("setting", ["train.loss=[]", "train.loss=[{name: ce, weight: 0}]"])
def test_34_04_a_loss_that_adds_up_to_zero_is_refused(setting):
    with pytest.raises(ConfigError, match=r"'train.loss' has no term with a weight above 0"):
        load_config(ROOT / "configs" / "demo.yaml", [setting])


# ---------------------------------------------------------------- 5-6: messages that sent the user the wrong way


def test_34_05_extends_naming_a_folder_says_it_is_a_folder(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(f"extends: {ROOT / 'configs'}\ntrain: {{epochs: 2}}\n")
    with pytest.raises(ConfigError, match=r"which is a folder; `extends:` names one config file"):
        load_config(config)
    with pytest.raises(ConfigError, match=r"is a folder; name one config file"):
        load_config(ROOT / "configs")


def test_34_06_check_data_refuses_the_cache_dir_that_training_refuses(data_dir, tmp_path):
    for command in ("check-data", "train-all"):
        res = invoke(command, tmp_path, data_dir, *TINY, "cache_dir=/dev/null")
        assert_message(res, "cache_dir /dev/null is a device, not a folder", "set cache_dir to a folder")


# ---------------------------------------------------------------- 7-8: predict


def test_predict_leaves_out_a_photo_one_model_cannot_read_and_another_can(run_copy, tmp_path, monkeypatch):
    """Each model's rows are its photos': a photo that one model's decoding refuses is left out of every model's
    rows (and named), not blended with the next photo's row."""
    import ensemble.predict as predict_module

    photos = sorted((run_copy / "eval" / "images").iterdir())[:3]
    folders = {}
    for name, chosen in (("all", photos), ("readable", photos[1:])):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for photo in chosen:
            (folders[name] / photo.name).write_bytes(photo.read_bytes())
    expected = predict_module.predict_folder(tmp_path / "run", folders["readable"], tmp_path / "e.csv",
                                             log=lambda m: None)
    real, calls = predict_module.predict_one, []

    def second_model_refuses_the_first_photo(*a, **kw):
        p, cfg, ok, bad = real(*a, **kw)
        calls.append(p)
        if len(calls) == 2:
            p, ok, bad = p[1:], ok[1:], bad + [(str(ok[0]), "OSError: refused by this model's decoder")]
        return p, cfg, ok, bad
    monkeypatch.setattr(predict_module, "predict_one", second_model_refuses_the_first_photo)
    lines = []
    df = predict_module.predict_folder(tmp_path / "run", folders["all"], tmp_path / "p.csv", log=lines.append)
    assert len(calls) == 2 and [p.rsplit("/", 1)[1] for p in df["path"]] == [p.name for p in photos[1:]]
    assert f"unreadable, skipped: {folders['all'] / photos[0].name} (OSError: refused by this model's decoder)" \
        in lines
    columns = [f"p{c}" for c in range(18)] + ["class"]
    assert (df[columns].to_numpy() == expected[columns].to_numpy()).all()


def test_34_07_predict_names_looping_links_as_unreadable(run_copy, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = next((run_copy / "eval" / "images").iterdir())
    (folder / "good.jpg").write_bytes(photo.read_bytes())
    os.symlink("self.jpg", folder / "self.jpg")
    os.symlink(".", folder / "up")
    res = predict(tmp_path / "run", folder, tmp_path / "p.csv")
    assert_message(res, "1 photos predicted, 1 unreadable", code=0)
    assert f"unreadable, skipped: {folder / 'self.jpg'} (a link that loops" in res.output
    assert f"not followed: {folder / 'up'} (a link to a folder" in res.output


def test_34_08_predict_out_under_a_file_is_a_user_error(run_copy, tmp_path):
    afile = tmp_path / "afile.jpg"
    afile.write_text("x")
    res = predict(tmp_path / "run", run_copy / "eval" / "images", afile / "x.csv")
    assert_message(res, f"--out {afile / 'x.csv'}: {afile} is a file, not a folder")
    assert "--debug" not in res.output and afile.read_text() == "x"
    with read_only(tmp_path / "ro") as ro:  # refused before any model runs, with the reason
        res = predict(tmp_path / "run", run_copy / "eval" / "images", ro / "p.csv")
    ro = tmp_path / "ro"
    assert_message(res, f"--out {ro / 'p.csv'}: {ro} cannot be written (read-only file system)")


# ---------------------------------------------------------------- 9: Ctrl-C once the outputs are switched in


def test_34_09_ctrl_c_during_the_final_switch_finishes_and_says_so(run_copy, tmp_path, monkeypatch):
    import pipeline.switch

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("Ctrl-C is not Python's KeyboardInterrupt in this process")
    run = tmp_path / "run"
    before = json.loads(weights_json(run).read_text())
    apply = pipeline.switch._apply

    def ctrl_c_midway(run_dir, plan):
        os.kill(os.getpid(), signal.SIGINT)  # held off: it waits until the renames are done
        apply(run_dir, plan)

    monkeypatch.setattr(pipeline.switch, "_apply", ctrl_c_midway)
    res = invoke("ensemble", tmp_path, run_copy, *TINY, "train.epochs=1", "ensemble.tune_offsets=false")
    monkeypatch.undo()
    assert_message(res, "interrupted (SIGINT) after the new outputs were in place", code=0)
    after = json.loads(weights_json(run).read_text())
    assert after != before and not list(run.glob(".switch.json"))  # the new outputs, whole
    assert (run / "log.txt").read_text().splitlines()[-1].endswith(" finished")

    import ensemble.run

    def ctrl_c_while_tracking(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(ensemble.run, "track_ensemble", ctrl_c_while_tracking)
    res = invoke("ensemble", tmp_path, run_copy, *TINY, "train.epochs=1")
    assert_message(res, "interrupted (SIGINT) after the new outputs were in place", code=0)
    assert json.loads(weights_json(run).read_text()) == before  # back to the first ensemble's choice


# ---------------------------------------------------------------- 10: cache


def test_34_10_negative_prune_age_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "keep.json").write_text("{}")
    res = CliRunner().invoke(main, ["cache", "--dir", str(cache), "--prune", "--older-than", "-5"])
    assert_message(res, "--older-than", "-5", code=2)
    assert (cache / "keep.json").exists()


# ---------------------------------------------------------------- 11: messages


def test_34_11_check_data_does_not_send_the_user_to_check_data(data_dir, tmp_path):
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("path,field,new\n")
    res = invoke("check-data", tmp_path, data_dir, *TINY, f"data.label_fixes={fixes}")
    assert_message(res, str(fixes))
    assert "maskfold check-data" not in res.output


def test_34_11_ensemble_says_a_fold_is_being_trained_now(run_copy, tmp_path):
    with file_lock(job_lock(pair_dir(tmp_path / "run", "test_resnet", 0))):
        res = invoke("ensemble", tmp_path, run_copy, *TINY, "train.epochs=2")
    assert_message(res, f"fold 0 (being trained now, by pid {os.getpid()} on {socket.gethostname()}")
    assert "training stopped before its end" not in res.output


def test_34_11_no_library_warning_reaches_the_user(data_dir, tmp_path):
    # One step of cosine after the warm-up: timm warns that the schedule changes nothing. In a process of its own,
    # as a user runs it (pytest's log capture would take the warning away from the screen here).
    sets = [*TINY, "train.epochs=1", "train.max_steps_per_epoch=2", "train.warmup_epochs=0.5"]
    assert_message(invoke("folds", tmp_path, data_dir, *sets), code=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MASKFOLD_DEBUG": "", "PYTHONWARNINGS": ""}
    for jobs, debug in (("2", []), ("1", ["--debug"])):  # worker processes, and the command's own
        res = subprocess.run([sys.executable, "-m", "pipeline.cli", *debug,
                              *cli_args("train-all", tmp_path, data_dir, *sets), "--jobs", jobs],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert res.returncode == 0 and "OOF macro F1" in res.stdout, res.stdout + res.stderr
        shown = "will have no effect" in res.stdout + res.stderr
        assert shown == bool(debug), (jobs, debug, res.stderr)  # --debug shows what the libraries say
        shutil.rmtree(tmp_path / "run" / "models")


# ---------------------------------------------------------------- tracking that fails before training


def test_34_12_mlflow_file_store_is_refused_before_any_work(data_dir, tmp_path):
    pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")
    for command in ("check-data", "train-all", "ensemble"):
        res = invoke(command, tmp_path, data_dir, *TINY, "tracking.kind=mlflow",
                     f"tracking.uri=file://{tmp_path / 'mlruns'}")
        assert_message(res, "'tracking.kind' is mlflow but MLflow cannot open file://", "sqlite:///")
    assert not (tmp_path / "run" / "models").exists()


def test_34_12_mlflow_server_down_is_refused_at_once(data_dir, tmp_path):
    pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = invoke("train-all", tmp_path, data_dir, *TINY, "tracking.kind=mlflow",
                 f"tracking.uri=http://127.0.0.1:{port}")
    assert_message(res, f"MLflow cannot open http://127.0.0.1:{port}", "start the server")
    assert not (tmp_path / "run" / "models").exists()


def test_34_12_wandb_online_without_login_is_refused_offline_is_fine(data_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the `wandb` extra is not installed")
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no W&B settings
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    import wandb.sdk.wandb_setup as setup

    monkeypatch.setattr(setup, "_singleton", None, raising=False)  # settings read again from this environment
    res = invoke("check-data", tmp_path, data_dir, *TINY, "tracking.kind=wandb")
    assert_message(res, "'tracking.kind' is wandb but W&B has no login", "wandb login", "WANDB_MODE=offline")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(setup, "_singleton", None, raising=False)
    assert_message(invoke("check-data", tmp_path, data_dir, *TINY, "tracking.kind=wandb"), code=0)


def test_folds_grouping_faces_refuses_a_cache_dir_that_is_a_file(data_dir, tmp_path):
    pytest.importorskip("dlib", reason="the `faces` extra is not installed")
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder\n")
    res = invoke("folds", tmp_path, data_dir, *TINY, "folds.same_face=group", f"cache_dir={blocker}")
    assert_message(res, f"cache_dir {blocker} is a file, not a folder", "set cache_dir to a folder")


def test_a_damaged_embedding_shard_is_embedded_again_not_an_error(tmp_path):
    """An emptied, cut-short or garbage shard in the embedding cache is passed over (its photos embedded again),
    never `EOFError` or `BadZipFile` for the user."""
    import numpy as np

    from pipeline.faces.embeddings import _load_store

    np.savez(tmp_path / "good.npz", keys=np.array(["a|box"]), vectors=np.ones((1, 2, 128), np.float32))
    whole = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.npz").write_text("not a shard\n")
    known = _load_store(tmp_path)
    assert list(known) == ["a|box"] and known["a|box"].shape == (2, 128)
