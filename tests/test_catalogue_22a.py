"""The catalogue, continued: faults a hostile new user found (outputs that are not plain files, a run's record and
outputs kept whole through refusals, interrupts and full disks, paths spelt two ways, EXIF and aspect ratio,
decompression bombs, a prune during training, odd run and cache folders). One test per fault, named after it.
"""
import errno
import os
import shutil
import signal
import stat
import struct
import subprocess
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.data.images import read_rgb
from pipeline.io import atomic_torch_save
from pipeline.train.jobs import train_all
from pipeline.train.trainer import Trainer
from tests.catalogue_kit import assert_message, person, photo
from tests.catalogue_kit import invoke as catalogue_invoke
from tests.conftest import TINY, tiny_config

QUIET = dict(log=lambda m: None)
SETS = [*TINY, "train.epochs=1"]


def invoke(command, tmp_path, data_dir, *sets, extra=()):
    return catalogue_invoke(command, tmp_path, data_dir, *SETS, *sets, extra=extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, demo_source):
    """A tiny run trained and ensembled once for the module: (its folder, its data)."""
    base = tmp_path_factory.mktemp("finished")
    data = base / "data"
    shutil.copytree(demo_source, data)
    cfg = tiny_config(base, data, "train.epochs=1")
    assert set(train_all(cfg, **QUIET)["status"]) == {"done"}
    assert_message(invoke("ensemble", base, data), "submission", code=0)
    return base, data


@pytest.fixture
def run_copy(finished, tmp_path):
    """A copy of the finished run under tmp_path/run; its data is shared and must not be changed."""
    base, data = finished
    shutil.copytree(base / "run", tmp_path / "run", symlinks=True)
    return data


OUTPUTS = ("submission.csv", "config.yaml", "ensemble/report.md", "ensemble/weights.json", "ensemble/test_probs.npz")


def outputs(run: Path) -> dict:
    return {name: (run / name).read_bytes() for name in OUTPUTS}


def temporaries(run: Path) -> list:
    return [p for p in run.rglob(".*.tmp")] + list(run.glob(".switch.json"))


def last_log_line(run: Path) -> str:
    return (run / "log.txt").read_text().splitlines()[-1]


# ---------------------------------------------------------------- 1


def test_22_01_predict_out_writes_through_devices_and_links(run_copy, tmp_path):
    run, images = tmp_path / "run", run_copy / "eval" / "images"

    def predict(out):
        return CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out", str(out)])

    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("old\n")
    link.symlink_to(real)
    assert_message(predict(link), "wrote", code=0)
    assert link.is_symlink() and real.read_text().startswith("path,p0")

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    try:
        res = predict(fifo)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the pipe was replaced by a file"
        assert_message(res, "wrote", code=0)
        assert reader.communicate(timeout=60)[0].startswith("path,p0")
    finally:
        reader.kill()

    r, w = os.pipe()  # what `--out >(wc -l)` hands over: /dev/fd/N, a link to a pipe
    got = []
    drain = threading.Thread(target=lambda: got.append(os.fdopen(r).read()))
    drain.start()
    try:
        res = predict(f"/dev/fd/{w}")
    finally:
        os.close(w)
        drain.join(60)
    assert_message(res, "wrote", code=0)
    assert got and got[0].startswith("path,p0")

    full = tmp_path / "full"  # /dev/full's twin: writing to it fails with ENOSPC
    try:
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except OSError:
        return  # no device nodes here (no CAP_MKNOD): the pipes and links above are the test
    assert_message(predict(full), f"no space left on {full}")
    assert stat.S_ISCHR(os.stat(full).st_mode), "the device was replaced by a file"


# ---------------------------------------------------------------- 2


def test_22_02_refused_ensemble_does_not_rewrite_the_run_record(run_copy, tmp_path):
    run = tmp_path / "run"
    before = outputs(run)
    res = invoke("ensemble", tmp_path, run_copy, "tta=[orig]")  # the pairs predicted with orig+hflip: refused
    assert_message(res, "predicted with another TTA", "run `maskfold train-all`")
    assert outputs(run) == before, "a refused ensemble changed the run's config or outputs"
    assert "tta:\n- orig\n- hflip" in (run / "config.yaml").read_text()
    assert "failed: 2 problem(s); run `maskfold train-all` with this config" in last_log_line(run)
    assert_message(invoke("ensemble", tmp_path, run_copy), "submission", code=0)
    assert last_log_line(run).endswith(" finished")


# ---------------------------------------------------------------- 3


@pytest.mark.parametrize("spelling", ["{p}/", "./{p}", "./{p}/"])
def test_22_03_person_listed_as_x_and_x_slash_is_one_person(data_dir, tmp_path, spelling):
    folder, table = person(data_dir)
    again = table.iloc[[0]].assign(path=spelling.format(p=folder.name), id="999999")
    pd.concat([table, again]).to_csv(data_dir / "train" / "train.csv", index=False)
    for command in ("check-data", "folds"):
        res = invoke(command, tmp_path, data_dir)
        assert_message(res, f"path '{folder.name}' appears in more than one row",
                       f"'{folder.name}', '{spelling.format(p=folder.name)}'", "listed once")
    assert not (tmp_path / "run" / "folds.csv").exists()


# ---------------------------------------------------------------- 4


def test_22_04_exif_orientation_is_applied_and_other_ratios_are_cropped_not_stretched(run_copy, data_dir, tmp_path):
    folder, _ = person(data_dir)
    upright = read_rgb(photo(folder, "normal"))  # a 3:4 portrait
    h, w = upright.shape[:2]
    # stored sideways with EXIF orientation 6 ("turn 90 degrees clockwise to show"), as phones write them
    sideways = folder / "mask1.jpg"
    photo(folder, "mask1").unlink()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(sideways, quality=95, exif=exif)
    # a square photo: the centre 3:4 part of it, not the whole square squeezed
    square = folder / "mask2.png"
    photo(folder, "mask2").unlink()
    Image.fromarray(upright[(h - w) // 2 : (h - w) // 2 + w]).save(square)
    size = (48, 64)
    want = read_rgb(photo(folder, "normal"), size).astype(int)
    assert np.abs(read_rgb(sideways, size).astype(int) - want).mean() < 6
    got, sq = read_rgb(square, size).astype(int), upright[(h - w) // 2 : (h - w) // 2 + w]
    centre = cv2.resize(sq[:, (w - w * 3 // 4) // 2 : (w - w * 3 // 4) // 2 + w * 3 // 4], size,
                        interpolation=cv2.INTER_AREA)
    assert np.abs(got - centre).max() <= 2
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, "1 photo(s) turned upright by their EXIF orientation", str(sideways),
                   f"1 photo(s) not at the cache's 3:4 ratio (e.g. {square}, {w}x{w})", "never stretched", code=0)
    res = CliRunner().invoke(main, ["predict", "--run", str(tmp_path / "run"), "--images", str(folder), "--out",
                                    str(tmp_path / "p.csv")])
    assert_message(res, "1 photo(s) turned upright", "1 photo(s) not at the cache's 3:4 ratio", code=0)


# ---------------------------------------------------------------- 5


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_22_05_decompression_bomb_is_one_problem_line_naming_the_photo(data_dir, tmp_path):
    folder, _ = person(data_dir)
    photo(folder, "mask3").unlink()
    bomb = folder / "mask3.png"
    bomb.write_bytes(_png_header_only(30000, 30000))  # 900 million pixels claimed by a 100-byte file
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, f"{bomb}: too large to decode safely", "replace it with a smaller copy")
    assert res.output.count(str(bomb)) == 1


# ---------------------------------------------------------------- 6


def test_22_06_cache_prune_while_train_all_runs_skips_the_caches_in_use(data_dir, tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1")
    cache = Path(cfg.cache_dir)
    fit, pruned = Trainer.fit, []

    def prune_then_fit(self, state=None):
        pruned.append(CliRunner().invoke(main, ["cache", "--dir", str(cache), "--prune"]).output)
        return fit(self, state)

    monkeypatch.setattr(Trainer, "fit", prune_then_fit)
    table = train_all(cfg, **QUIET)
    assert set(table["status"]) == {"done"}, table.to_string()
    assert len(pruned) == 2 and all("in use by a running command, kept" in p for p in pruned), pruned
    assert all("0 cache(s)" in p for p in pruned)
    res = CliRunner().invoke(main, ["cache", "--dir", str(cache), "--prune"])  # train-all has ended: free to go
    assert_message(res, "2 cache(s)", "freed", code=0)
    assert not list(cache.glob("*.u8")) and not list(cache.glob(".*.lease"))


# ---------------------------------------------------------------- 7


@contextmanager
def read_only(folder: Path):
    """`folder` as a read-only mount (root writes through permissions, not through a read-only mount)."""
    folder.mkdir(parents=True, exist_ok=True)
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip("cannot make a read-only mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a read-only mount here")
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize("key", ["run_dir", "cache_dir"])
@pytest.mark.parametrize("kind", ["a file", "/dev/null", "under a file", "read-only"])
def test_22_07_unwritable_or_odd_run_dir_or_cache_dir_is_one_line(data_dir, tmp_path, key, kind):
    tiny_config(tmp_path, data_dir)  # folds.csv written: train-all gets as far as the cache
    file = tmp_path / "file"
    file.write_text("not a folder\n")
    where = {"a file": file, "/dev/null": Path("/dev/null"), "under a file": file / "sub",
             "read-only": tmp_path / "ro" / "x"}[kind]
    expect = {"a file": f"{key} {where} is a file, not a folder", "/dev/null": f"{key} {where} is a device, not a folder",
              "under a file": f"{key} {where} lies under {file}, which is a file",
              "read-only": f"{key} {where} cannot be written (Read-only file system)"}[kind]
    command = "train-all" if key == "cache_dir" else "check-data"
    if kind == "read-only":
        with read_only(tmp_path / "ro"):
            res = invoke(command, tmp_path, data_dir, f"{key}={where}")
    else:
        res = invoke(command, tmp_path, data_dir, f"{key}={where}")
    assert_message(res, expect, f"set {key} to a folder maskfold can write")
    assert file.read_text() == "not a folder\n" and stat.S_ISCHR(os.stat("/dev/null").st_mode)


# ---------------------------------------------------------------- 8


@contextmanager
def small_disk(folder: Path, size: str):
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # still open somewhere: detach it


def test_22_08_full_disk_is_named_and_the_ensemble_outputs_stay_one_set(run_copy, tmp_path, monkeypatch):
    run = tmp_path / "run"
    before = outputs(run)
    write_text = Path.write_text

    def full_for_the_report(self, *a, **kw):
        if self.name.startswith(".report.md"):  # the report's temporary, after the submission was written
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", full_for_the_report)
    res = invoke("ensemble", tmp_path, run_copy)
    monkeypatch.undo()
    assert_message(res, f"no space left on {run / 'ensemble'}")
    assert outputs(run) == before, "the new submission (or another new output) sits beside the old report"
    assert not temporaries(run)
    assert last_log_line(run).endswith(f"failed: no space left on {run / 'ensemble'}; free some space there (or "
                                       f"point the run at a larger disk) and rerun")
    # a real full disk under the photo cache: named, where a memory-mapped cache used to die of SIGBUS
    with small_disk(tmp_path / "small", "256k") as small:
        res = invoke("train-all", tmp_path, run_copy, f"cache_dir={small}")
        held = [p for p in Path("/proc/self/fd").iterdir() if os.path.realpath(p).startswith(str(small))]
        # torch says only "inline_container.cc ... unexpected pos" when a checkpoint meets a full disk
        with pytest.raises(OSError, match=f"no space left on {small}"):
            atomic_torch_save({"weights": torch.zeros(1 << 20)}, small / "best.pt")
    assert_message(res, f"no space left on {small}")
    assert not held, "a failed train-all still holds files on the full disk"


# ---------------------------------------------------------------- 14


def test_22_14_interrupted_ensemble_keeps_the_previous_outputs_and_the_log_says_how_it_ended(run_copy, tmp_path,
                                                                                              monkeypatch):
    import ensemble.report

    run = tmp_path / "run"
    before = outputs(run)
    def ctrl_c(*a, **kw):  # once the submission was written, before the report
        raise KeyboardInterrupt

    def sigterm(*a, **kw):
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "SIGTERM would kill pytest itself"
        os.kill(os.getpid(), signal.SIGTERM)

    for interrupted, outcome in ((ctrl_c, "aborted (Ctrl-C)"), (sigterm, "aborted (SIGTERM)")):
        monkeypatch.setattr(ensemble.report, "write_report", interrupted)
        res = invoke("ensemble", tmp_path, run_copy)
        monkeypatch.undo()
        assert res.exit_code != 0
        assert outputs(run) == before, f"{outcome}: the outputs are no longer one ensemble's"
        assert not temporaries(run)
        assert last_log_line(run).endswith(outcome)
    # a switch cut short by a hard kill (its journal left behind) is completed by the next ensemble
    from pipeline.io import atomic_write_text
    from pipeline.switch import one_unit

    writes = []
    atomic_write_text(run / "submission.csv", "ImageID,ans\n", writes)
    (run / ".switch.json").write_text(f'{{"remove": [], "replace": [["{writes[0][0].name}", "submission.csv"]]}}')
    with one_unit(run, list):
        pass
    assert (run / "submission.csv").read_text() == "ImageID,ans\n" and not temporaries(run)
    assert_message(invoke("ensemble", tmp_path, run_copy), "submission", code=0)
    assert (run / "submission.csv").read_bytes() == before["submission.csv"]
    assert last_log_line(run).endswith(" finished")
