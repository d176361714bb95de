"""`maskfold predict`: any folder of photos through a finished run's ensemble (same TTA, weights and offsets, and the
same models as the submission: the folds', the refits' or both, as ensemble.test_from chose).

The one part of the ensemble stage that loads models: every fold's (or refit's) best.pt, each rebuilt from the
config stored beside its weights, so inference cannot drift from training.
"""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from ensemble import blend
from ensemble.age_cut import shift_bands
from ensemble.weights import MemberRef, load_weights
from pipeline.config import config_from_dict
from pipeline.data.cache import decode
from pipeline.data.datasets import CachedPhotos
from pipeline.data.images import photo_shape, shape_notes
from pipeline.data.transforms import build_transform
from pipeline.errors import BadInput, MissingInput
from pipeline.faces.crop import crop_function, crop_key
from pipeline.io import output_file
from pipeline.labels import MASKS, NUM_CLASSES, age_band_names, decode_label
from pipeline.layout import pair_file, refit_file
from pipeline.model import models
from pipeline.model.inference import Inference, predict_logits, resolve_device
from pipeline.model.years import class_scores, prediction_arrays
from pipeline.progress import bar
from pipeline.records import BestMeta, RecordError
from pipeline.storage import require_output
from pipeline.tables.fields import IMAGE_EXTS
from pipeline.train.face_job import KIND as FACE_KIND
from pipeline.train.face_job import head_of, used_views


def find_photos(folder: Path) -> tuple[list[Path], list[tuple[str, str]], list[Path]]:
    """The photos under `folder`; what looks like one but cannot be read as a file (a broken or looping link, a
    pipe), with why; and the links to folders, which are not followed (one back up would list photos forever)."""
    photos, unreadable, links = [], [], []
    for p in sorted(Path(folder).rglob("*")):
        if p.name.startswith("."):
            continue
        if p.is_symlink() and p.is_dir():
            links.append(p)
        elif p.suffix.lower() in IMAGE_EXTS:
            if p.is_file():
                photos.append(p)
            else:
                unreadable.append((str(p), _not_a_file(p)))
    return photos, unreadable, links


def _not_a_file(p: Path) -> str:
    try:
        p.stat()
    except OSError as e:
        kind = "a link that loops" if e.errno == errno.ELOOP else "a broken link" if p.is_symlink() else "unreadable"
        return f"{kind} ({e.strerror})"
    return "not a plain file"


def decode_all(files, size, crop_fn) -> tuple[np.ndarray, list[Path], list[tuple[str, str]]]:
    """Decode like the training cache did; unreadable files are returned, not raised."""
    ok, arrays, bad = [], [], []
    for f in files:
        try:
            arrays.append(decode(f, size, crop_fn)[0])
            ok.append(f)
        except Exception as e:  # noqa: BLE001 - listed in the output
            bad.append((str(f), f"{type(e).__name__}: {e}"))
    w, h = size
    return (np.stack(arrays) if arrays else np.zeros((0, h, w, 3), np.uint8)), ok, bad


def member_checkpoints(run: Path, member: MemberRef, test_from: str) -> tuple[list[Path], Path | None]:
    """The best.pt files of a member's fold models and of its refit, as far as test_from uses them."""
    where = member.run_dir(run)
    folds = [] if test_from == "refit" else [pair_file(where, member.backbone, k, "best")
                                             for k in range(member.n_splits)]
    refit = None if test_from == "folds" else refit_file(where, member.backbone, "best")
    missing = [p for p in folds + ([refit] if refit else []) if not p.is_file()]
    if missing:
        raise MissingInput(f"{missing[0]} not found (the ensemble predicted the eval set with the "
                           f"{test_from} models); rerun `maskfold train-all{' --refit' if refit else ''}` "
                           f"for that run")
    return folds, refit


def predict_one(checkpoint: Path, run_dir: Path, tta, files, decoded: dict, dev, age_cut=None):
    """One model's probabilities on the photos, decoded as its run (`run_dir`)'s cache decodes them (decoded: a
    cache of those decodings by (cache size, crop)); also its config and the readable and unreadable files. age_cut:
    the cuts the ensemble tuned (ensemble.tune_age_cut), at which a years member sums its ages into bands."""
    ckpt = models.load_checkpoint(checkpoint)  # read once: a face member's head and settings are in it too
    try:
        meta = BestMeta.from_checkpoint(ckpt, checkpoint)
    except RecordError as e:
        raise BadInput(f"{e}; rerun `maskfold train-all` for that run") from None
    cfg = config_from_dict(meta.config)
    if meta.backbone.get("kind") == FACE_KIND:
        return face_probs(ckpt, cfg, run_dir, tta, files, decoded)
    key = (tuple(cfg.data.cache_size), crop_key(cfg.data, run_dir))
    if key not in decoded:
        readable = [f for f in files if Path(f).is_file()]
        decoded[key] = decode_all(files, key[0], crop_function(cfg.data, readable, cfg.cache_dir, run_dir))
    arr, ok, bad = decoded[key]
    if not ok:  # a header-only CSV and exit 0 would pass for a prediction
        shown = "; ".join(f"{f} ({why})" for f, why in bad[:3]) + ("; ..." if len(bad) > 3 else "")
        raise BadInput(f"none of the {len(files)} photos could be read, nothing written: {shown}; check the folder "
                       f"given with --images")
    model = models.model_from_best(meta, ckpt["model"], cfg).to(dev)
    tf = build_transform(cfg.augment.val, key[0], tuple(meta.img_size))
    loader = DataLoader(CachedPhotos(arr, np.arange(len(arr)), transform=tf), batch_size=64)
    out = predict_logits(model, loader, Inference(dev, meta.mean, meta.std, tta, cfg.train.channels_last,
                                                  cfg.train.amp if dev.type == "cuda" else "none"))
    probs = blend.softmax(class_scores(out))
    if age_cut is not None and out.shape[1] > NUM_CLASSES:
        ages = prediction_arrays(out, cfg.train)
        probs = shift_bands(probs, ages["age_probs"], ages["ages"], cfg.data.age_cuts,
                            np.subtract(age_cut, cfg.data.age_cuts))
    return probs, cfg, ok, bad


def face_probs(ckpt: dict, cfg, run_dir: Path, tta, files, decoded: dict):
    """A face member's probabilities (pipeline.train.face_job): the photos embedded (the run's detectors, else its
    prior box; from and into the embedding cache) once for every fold of the member, then its head."""
    from pipeline.data.images import read_rgb
    from pipeline.faces.embeddings import new_photo_embeddings
    from pipeline.model.face_head import class_log_probs

    head, face = head_of(ckpt)
    key = ("face", face["chain"], tuple(face["prior"]))
    if key not in decoded:
        ok, bad = [], []
        for f in files:
            try:
                read_rgb(f)
                ok.append(f)
            except Exception as e:  # noqa: BLE001 - listed in the output, as decode_all lists it
                bad.append((str(f), f"{type(e).__name__}: {e}"))
        vectors = new_photo_embeddings([str(f) for f in ok], face["chain"], face["prior"], cfg.cache_dir, run_dir)[0] \
            if ok else None
        decoded[key] = (vectors, ok, bad)
    vectors, ok, bad = decoded[key]
    if not ok:
        raise BadInput(f"none of the {len(files)} photos could be read, nothing written; check the folder given "
                       f"with --images")
    return blend.softmax(class_log_probs(head, vectors[:, used_views(tta)])), cfg, ok, bad


def common_rows(results: list[tuple[np.ndarray, list]], files) -> tuple[list, list[np.ndarray]]:
    """The photos that every model read, in `files` order, and each model's probabilities on them row for row
    (results: a model's probabilities and the photos they are for). A photo that one member's decoding refuses and
    another's reads is left out of all, so that no row is blended with another photo's."""
    readable = set.intersection(*(set(ok) for _, ok in results))
    common = [f for f in files if f in readable]
    if not common:
        raise BadInput(f"none of the {len(files)} photos could be read by every model, nothing written; check the "
                       f"folder given with --images")
    rows = []
    for probs, ok in results:
        where = {f: i for i, f in enumerate(ok)}
        rows.append(probs[[where[f] for f in common]])
    return common, rows


def predict_folder(run_dir: str | Path, images: str | Path, out: str | Path, device=None, log=print) -> pd.DataFrame:
    run = Path(run_dir)
    fitted = load_weights(run)
    require_output(out, "--out")  # before the models run: a bad --out would waste the whole prediction
    files, skipped, links = find_photos(Path(images))
    for link in links:
        log(f"not followed: {link} (a link to a folder; give that folder with --images to predict its photos)")
    if not files:
        shown = "; ".join(f"{f} ({why})" for f, why in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        raise MissingInput(f"{images}: no .jpg/.jpeg/.png photos found (searched recursively)"
                           + (f"; not read: {shown}" if skipped else ""))
    dev = resolve_device(device or "auto")
    # The models that predicted the eval set for the submission (ensemble.test_from): folds, refit or both.
    test_from = fitted.test_from
    checkpoints = [member_checkpoints(run, m, test_from) for m in fitted.members]
    results, decoded, unread = [], {}, {}  # decoded: the photos as each (cache size, crop) decodes them
    models_bar = bar(total=sum(len(f) + (r is not None) for f, r in checkpoints), desc="predict", unit="model")
    for m, (folds, refit) in zip(fitted.members, checkpoints):
        for path in folds + ([refit] if refit else []):
            models_bar.update(1)
            p, cfg, ok, bad = predict_one(path, m.run_dir(run), m.tta, files, decoded, dev, fitted.age_cut)
            results.append((p, ok))
            for f, why in bad:
                unread.setdefault(f, why)
    models_bar.close()
    ok, rows = common_rows(results, files)
    fold_probs, refit_probs, i = [], [], 0
    for folds, refit in checkpoints:  # the rows back into each member's fold models and refit
        fold_probs.append(rows[i:i + len(folds)])
        refit_probs.append(rows[i + len(folds)] if refit else None)
        i += len(folds) + (refit is not None)
    scores = blend.test_scores({"weights": fitted.weights, "stacker": fitted.stacker,
                                "task_weights": fitted.task_weights}, fold_probs, refit_probs, test_from, fitted.method)
    pred = blend.predict_with(scores, np.asarray(fitted.offsets))
    final = scores / scores.sum(1, keepdims=True)
    m, g, a = decode_label(pred)
    df = pd.DataFrame({"path": [str(f) for f in ok]})
    for c in range(NUM_CLASSES):
        df[f"p{c}"] = final[:, c].round(5)
    df["class"] = pred
    df["mask"] = [MASKS[i] for i in m]
    df["gender"] = np.where(g == 1, "female", "male")
    ages = age_band_names(cfg.data.age_cuts)
    df["age_band"] = [ages[i] for i in a]
    with output_file(out) as where:  # a device, pipe or link is written through, never replaced
        df.to_csv(where, index=False)
    bad = skipped + list(unread.items())
    for f, why in bad:
        log(f"unreadable, skipped: {f} ({why})")
    for note in shape_notes([(str(f), photo_shape(f)) for f in ok], tuple(cfg.data.cache_size)):
        log(note)
    log(f"wrote {out}: {len(df)} photos predicted, {len(bad)} unreadable")
    return df
