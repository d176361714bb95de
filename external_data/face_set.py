"""A real-face data set in the competition layout, for measuring on real faces what the drawn demo faces cannot show
(`maskfold demo-data --faces <UTKFace folder>`).

This stage's own machinery (external_data.run.run_external) turns UTKFace photos of every adult age into
masked pseudo-persons of seven photos; they are split by person into train/ (train.csv and images/) and an eval
set (eval/info.csv and eval/images/, every photo of its persons) with its truth in eval/labels.csv, which the
ensemble reads to score its submission, as it reads the generated demo set's. The faces are written under `out`
only, never into the project.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.labels import PHOTOS, age_band, encode_label, photo_mask

FIRST_ID = 300001  # ids that never meet the competition's, nor the generated demo's (100001 up)


def make_face_data(out: str | Path, utkface: str | Path, templates: str | Path | None = None, persons: int = 400,
                   eval_share: float = 0.3, seed: int = 0, n_jobs: int = 2, log=print) -> Path:
    """Write `persons` real-face persons under `out`: about eval_share of them (by person) as the eval set."""
    from external_data.run import run_external  # here, not at import: the command's --help loads nothing
    from pipeline.config import config_from_dict
    from pipeline.layout import external_dir, extra_images_dir, extra_train_csv

    out = Path(out)
    build = out / ".build"
    cfg = config_from_dict({
        "data_dir": str(out / ".no-competition-photos"), "run_dir": str(build), "cache_dir": str(build / "cache"),
        "seed": seed,
        "external": {"source": "utkface", "path": str(utkface), "min_age": 18, "max_age": None,
                     "balance_gender": False, "max_persons": persons, "landmarks": "dlib",
                     "templates": str(templates) if templates else None, "framing": "blur"}}, "demo-data --faces")
    run_external(cfg, n_jobs=n_jobs, log=log, sheet_persons=0)
    table = pd.read_csv(extra_train_csv(external_dir(build)), dtype={"id": str})
    images = extra_images_dir(external_dir(build))
    order = np.random.default_rng(seed).permutation(len(table))
    n_eval = int(round(len(table) * eval_share))
    for sub in ("train", "eval"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    (out / "train" / "images").mkdir(parents=True)
    (out / "eval" / "images").mkdir(parents=True)
    rows, truth = [], []
    for rank, i in enumerate(order):
        r = table.iloc[i]
        pid = f"{FIRST_ID + i:06d}"
        source = images / r["path"]
        if rank >= n_eval:
            folder = f"{pid}_{r['gender']}_{r['race']}_{r['age']}"
            shutil.move(str(source), out / "train" / "images" / folder)
            rows.append({"id": pid, "gender": r["gender"], "race": r["race"], "age": int(r["age"]), "path": folder})
            continue
        for photo in PHOTOS:
            image_id = hashlib.sha1(f"{seed}-{pid}-{photo}".encode()).hexdigest() + ".jpg"
            shutil.move(str(source / f"{photo}.jpg"), out / "eval" / "images" / image_id)
            truth.append({"ImageID": image_id, "ans": int(encode_label(photo_mask(photo), r["gender"],
                                                                       int(age_band(int(r["age"])))))})
    pd.DataFrame(rows).sort_values("id").to_csv(out / "train" / "train.csv", index=False)
    truth = pd.DataFrame(truth).sample(frac=1.0, random_state=seed).reset_index(drop=True)  # no person in a row
    truth.assign(ans=0).to_csv(out / "eval" / "info.csv", index=False)
    truth.to_csv(out / "eval" / "labels.csv", index=False)
    shutil.rmtree(build)
    log(f"wrote {len(rows)} training persons ({len(rows) * len(PHOTOS)} photos) and {n_eval} eval persons "
        f"({len(truth)} photos, truth in eval/labels.csv) to {out}")
    return out
