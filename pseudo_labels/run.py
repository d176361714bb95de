"""`maskfold pseudo`: another run's ensemble labels this run's eval photos; the confident ones become train-only
photos under <run_dir>/pseudo/.

The workflow is two experiments. Run A is trained and ensembled as usual; its ensemble writes
ensemble/test_probs.npz (the blended eval-set probabilities). Run B is another config, with its own run_dir, that
says `pseudo.from_run: runs/A` and `data.use_pseudo: true`; `maskfold pseudo --config B` writes B's pseudo/, then
B's folds, train-all and ensemble run as usual. A run never labels its own training photos: its eval predictions
would teach it its own mistakes, and retraining it would overwrite the models that made them.

Output (<run_dir>/pseudo/): train/train.csv and train/images/<ImageID>/<photo><ext> in the competition layout,
one photo per "person" (an eval photo has no person grouping), the photo's name standing for the predicted mask
state (mask1, incorrect_mask, normal), train.csv giving the predicted gender and an age inside the predicted band;
each photo is a hard link to the eval photo (a copy where the file system cannot link). summary.json records the
settings, the source and the photos per class (pseudo_labels.current judges from it whether the photos are current);
extra.json tells the core how to read them as extra training photos (pipeline.data.extra). The folder is built
beside the old one and swapped in, so a reader never sees half of it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config, ConfigError
from pipeline.data.extra import ExtraRecord, format_probs, write_record
from pipeline.errors import DataError, Problem
from pipeline.io import pid_alive
from pipeline.labels import GENDERS, MASKS, NUM_CLASSES, band_age, class_names, decode_label, mask_photo
from pipeline.layout import blended_probs_npz, extra_images_dir, extra_train_csv, pseudo_dir, stage_summary
from pipeline.tables.eval import read_eval
from pipeline.tables.fields import IMAGE_EXTS, image_file
from pseudo_labels.current import PSEUDO_HINT, source_digest

TABLE_COLUMNS = ["id", "gender", "race", "age", "path", "label", "confidence", "soft_label"]


def source_probs(cfg: Config) -> tuple[Path, np.ndarray, np.ndarray]:
    """pseudo.from_run's blended eval probabilities (file, image ids, probabilities), checked against this run."""
    p = cfg.pseudo
    if not p.from_run:
        raise ConfigError("pseudo.from_run is not set: name the finished run whose ensemble labels the eval photos "
                          "(another run than this one, e.g. --set pseudo.from_run=runs/base)")
    source = Path(p.from_run)
    if source.resolve() == Path(cfg.run_dir).resolve():
        raise ConfigError(f"pseudo.from_run names this run itself ({cfg.run_dir}): a run cannot learn from its own "
                          f"eval predictions; give the pseudo-label experiment a config (and run_dir) of its own")
    path = blended_probs_npz(source)
    if not path.is_file():
        raise DataError([Problem(str(path), "not found: that run's ensemble has not written its eval probabilities")],
                        hint=f"run `maskfold ensemble` for {source} (with its own config) first")
    z = np.load(path)
    ids, probs, cuts = z["image_id"].astype(str), np.asarray(z["probs"], dtype=np.float64), z["age_cuts"].tolist()
    if cuts != list(cfg.data.age_cuts):
        raise DataError([Problem(str(path), f"its classes use age cuts {cuts}, this config's data.age_cuts are "
                                            f"{cfg.data.age_cuts}")],
                        hint="label with a run made with the same age cuts")
    evals, report = read_eval(cfg.data_dir)
    if evals is None or report.problems:
        raise DataError(report.problems or [Problem(f"{cfg.data_dir}/eval", "no eval set: nothing to pseudo-label")])
    if sorted(ids) != sorted(evals["image_id"]):
        raise DataError([Problem(str(path), f"its photos are not the eval photos of {cfg.data_dir}/eval/info.csv")],
                        hint="label with a run made on the same data")
    return path, ids, probs


def run_pseudo(cfg: Config, log=print) -> dict:
    p = cfg.pseudo
    path, ids, probs = source_probs(cfg)
    top, cls = probs.max(1), probs.argmax(1)
    keep = np.flatnonzero(top >= p.threshold)
    root = pseudo_dir(cfg.run_dir)
    remove_leftovers(root)
    stage = root.parent / f".{root.name}.staging-{os.getpid()}"
    images = extra_images_dir(stage)
    images.mkdir(parents=True)
    rows, skipped = [], []
    for i in keep:
        image_id = ids[i]
        suffix = Path(image_id).suffix.lower()
        if suffix not in IMAGE_EXTS:  # the contract reader would not see it as a photo
            skipped.append(image_id)
            continue
        mask, gender, band = decode_label(cls[i])
        dest = images / image_id / f"{mask_photo(MASKS[mask])}{suffix}"
        dest.parent.mkdir()
        link_or_copy(image_file(cfg.data_dir, f"eval/images/{image_id}"), dest)
        rows.append({"id": image_id, "gender": GENDERS[gender], "race": "unknown",
                     "age": band_age(int(band), cfg.data.age_cuts), "path": image_id, "label": int(cls[i]),
                     "confidence": f"{top[i]:.6g}", "soft_label": format_probs(probs[i:i + 1])[0] if p.soft else ""})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table.to_csv(extra_train_csv(stage), index=False)
    names = class_names(cfg.data.age_cuts)
    per_class = np.bincount(table["label"].to_numpy(dtype=np.int64), minlength=NUM_CLASSES)
    summary = {"from_run": str(Path(p.from_run).resolve()),
               "source_digest": source_digest(path),
               "threshold": p.threshold, "soft": p.soft, "age_cuts": list(cfg.data.age_cuts),
               "eval_photos": len(ids), "photos": len(table), "skipped_not_a_photo": skipped,
               "per_class": {f"{c} {names[c]}": int(n) for c, n in enumerate(per_class)}}
    stage_summary(stage).write_text(json.dumps(summary, indent=1))
    # each eval photo is its own person, under its ImageID, holding the one photo of its predicted mask state
    write_record(stage, ExtraRecord(source="pseudo", whole_persons=False, photo_ids=True, photos=len(table),
                                    hint=PSEUDO_HINT))
    swap_in(stage, root)
    log(f"{len(table)} of {len(ids)} eval photos have a top probability of at least {p.threshold} in "
        f"{path}; written with {'soft' if p.soft else 'hard'} labels to {extra_train_csv(root).parent}")
    log("per class: " + " ".join(f"{c}:{n}" for c, n in enumerate(per_class)))
    for image_id in skipped:
        log(f"skipped (not a .jpg/.jpeg/.png name): {image_id}")
    if not cfg.data.use_pseudo:
        log("note: data.use_pseudo is off in this config, so no training fold will use them")
    else:
        log("next: `maskfold folds`, `maskfold train-all` and `maskfold ensemble` with this config")
    return summary


def link_or_copy(src: Path, dest: Path) -> None:
    """A hard link (no space, and it survives a moved or deleted eval folder); a copy across file systems."""
    try:
        os.link(Path(src).resolve(), dest)
    except OSError:
        shutil.copy2(src, dest)


def swap_in(stage: Path, root: Path) -> None:
    """Replace `root` by the finished `stage` folder with two renames: never a half-written pseudo/."""
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    if root.exists():
        root.rename(old)
    stage.rename(root)
    shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(root: Path) -> None:
    """Staging and old folders of a pseudo stage killed midway (their process is gone)."""
    for d in root.parent.glob(f".{root.name}.*-*"):
        pid = d.name.rsplit("-", 1)[1]
        if d.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
