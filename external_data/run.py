"""`maskfold external`: import older faces, find landmarks, put masks on, write pseudo-persons.

Output (<run_dir>/external/): train/train.csv and train/images/<person>/ in the competition layout, a contact
sheet PNG, summary.json, the `masked` face detector trained on these persons, and, last, extra.json, which tells the
core how to read them as extra training photos (pipeline.data.extra). The folds stage adds these persons to every
training fold (fold -1) when data.use_external is on.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from PIL import Image

from external_data.geometry import competition_framing
from external_data.importers import import_csv, import_fairface, import_utkface, select
from external_data.persons import DEFAULT_GEOMETRY, FRAMINGS, make_person
from pipeline.config import Config
from pipeline.config.rules import check_choices
from pipeline.data.extra import ExtraRecord, write_record
from pipeline.data.images import read_rgb
from pipeline.errors import BadInput, DataError, MissingInput
from pipeline.faces.masks import load_maskthe_face
from pipeline.io import atomic_path, atomic_write_csv, atomic_write_text
from pipeline.labels import PHOTOS
from pipeline.layout import (
    external_dir,
    external_probe_json,
    external_sheet_png,
    extra_images_dir,
    extra_record,
    extra_train_csv,
    masked_detector,
    stage_summary,
)
from pipeline.progress import bar
from pipeline.tables.eval import read_eval
from pipeline.tables.fields import image_file
from pipeline.tables.train import read_train

LANDMARKS_FILE = "landmarks.json"  # beside the user's face table, not in a run directory
IMPORTERS = {"utkface": lambda e: import_utkface(e.path),
             "fairface": lambda e: import_fairface(e.path, e.images_dir),
             "csv": lambda e: import_csv(e.path, e.images_dir)}


def landmark_source(name: str, table_path: str | None):
    """A function file -> (68, 2) landmarks or None. 'file' reads landmarks.json beside the table."""
    if name == "dlib":
        from pipeline.faces import landmarks as faces

        faces.require()  # fail now, with the install hint, not in a worker
        return lambda f, img: faces.landmarks68(img)
    path = Path(table_path).parent / LANDMARKS_FILE
    if not path.is_file():
        raise MissingInput(f"{path}: external.landmarks is 'file' but there is no landmarks.json beside the table")
    try:
        points = json.loads(path.read_text())
        table = {str((path.parent / k).resolve()): np.asarray(v, np.float32) for k, v in points.items()}
    except (ValueError, AttributeError, TypeError) as e:
        raise BadInput(f"{path}: not a landmarks file ({type(e).__name__}); write one JSON object mapping each photo's "
                       f"path (relative to the table) to its 68 [x, y] points") from None
    return lambda f, img: table.get(str(Path(f).resolve()))


def _person_job(rows, out_dir: str, landmarks, templates, seed: int, framing: str, geometry: np.ndarray, walls):
    done = []
    for pid, r in rows:
        img = read_rgb(r["file"])
        lm = landmarks(r["file"], img)
        if lm is None:
            done.append((pid, None))
            continue
        folder = f"{pid}_{r['gender']}_{r['race']}_{r['age']}"
        dest = Path(out_dir) / folder
        dest.mkdir(parents=True, exist_ok=True)
        photos = make_person(img, lm, templates, np.random.default_rng([seed, int(pid[3:])]), framing, geometry,
                             walls)
        for name, arr in photos.items():
            Image.fromarray(arr).save(dest / f"{name}.jpg", quality=92)
        done.append((pid, folder))
    return done


def contact_sheet(root: Path, table: pd.DataFrame, out: Path, n: int = 12, cell=(96, 128)) -> None:
    """The first n pseudo-persons, a row each (labelled with person, age and gender), a column per photo name."""
    from PIL import ImageDraw

    rows = table.head(n).to_dict("records")
    label_w, head_h = 150, 18
    sheet = Image.new("RGB", (label_w + cell[0] * len(PHOTOS), head_h + cell[1] * max(1, len(rows))), "white")
    draw = ImageDraw.Draw(sheet)
    for c, photo in enumerate(PHOTOS):
        draw.text((label_w + c * cell[0] + 4, 3), photo, fill="black")
    for r, row in enumerate(rows):
        y = head_h + r * cell[1]
        draw.text((4, y + cell[1] // 2 - 14), f"{row['id']}\nage {row['age']}, {row['gender']}", fill="black")
        for c, photo in enumerate(PHOTOS):
            im = Image.open(root / row["path"] / f"{photo}.jpg").convert("RGB").resize(cell)
            sheet.paste(im, (label_w + c * cell[0], y))
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")


def _framing(cfg: Config, log) -> tuple[np.ndarray, np.ndarray | None]:
    """Face positions and sizes, and walls, from the competition photos (a fixed framing when there are none)."""
    try:
        train, _ = read_train(cfg.data_dir, cfg.data)
    except (DataError, OSError):
        train = None
    if train is None or not len(train):
        log(f"face geometry: no competition photos under {cfg.data_dir}; external faces use one fixed framing")
        return DEFAULT_GEOMETRY, None
    evals, _ = read_eval(cfg.data_dir)
    walls = [str(image_file(cfg.data_dir, p)) for p in evals["path"]] if evals is not None else None
    walls = [f for f in walls or [] if Path(f).is_file()]
    return competition_framing(train, cfg.data_dir, seed=cfg.seed, log=log, wall_photos=walls)


def _train_detector(images: Path, table: pd.DataFrame, run_dir, log) -> bool:
    """Train the `masked` face detector (data.face_detector) on these pseudo-persons; False without dlib."""
    from pipeline.faces import boxes, landmarks

    model = masked_detector(run_dir)
    model.unlink(missing_ok=True)  # a detector trained on the previous photos must not outlive them
    if not landmarks.available():
        log("masked-face detector: the `faces` extra is missing; not trained")
        return False
    persons = [{p: str(images / folder / f"{p}.jpg") for p in PHOTOS} for folder in table["path"]]
    return boxes.train_masked_detector(persons, model, log=log)


def config_choices(cfg: Config) -> dict[str, tuple]:
    """The names this stage lets a config choose, {key: (value, allowed)}: the importers and framings are this
    stage's, so the commands' preflight takes the lists from here (check-data refuses a typo before any work)."""
    return {"external.source": (cfg.external.source, tuple(IMPORTERS)),
            "external.framing": (cfg.external.framing, tuple(FRAMINGS))}


def run_external(cfg: Config, n_jobs: int = 2, log=print, sheet_persons: int = 12) -> dict:
    e = cfg.external
    check_choices(config_choices(cfg))
    if not e.path:
        raise BadInput("external.path is not set: point it at a UTKFace folder or a face table")
    start = time.time()
    faces, malformed = IMPORTERS[e.source](e)
    for f, why in malformed:
        log(f"skipped malformed entry: {f}: {why}")
    chosen = select(faces, e.min_age, e.max_age, e.balance_gender, e.max_persons, seed=cfg.seed)
    log(f"imported {len(faces)} faces ({len(malformed)} malformed, skipped); selected {len(chosen)} aged "
        f"{e.min_age}+{'' if e.max_age is None else f' to {e.max_age}'}")
    templates = load_maskthe_face(e.templates) if e.templates else None
    landmarks = landmark_source(e.landmarks, e.path)
    geometry, walls = _framing(cfg, log) if e.framing == "portrait" else (DEFAULT_GEOMETRY, None)

    root = external_dir(cfg.run_dir)
    images = extra_images_dir(root)
    extra_record(root).unlink(missing_ok=True)  # until the new photos are whole, there are none to train on
    if images.parent.exists():
        shutil.rmtree(images.parent)  # generated output: a rerun replaces it whole
    images.mkdir(parents=True)
    # "ext" ids never meet the competition's numeric ids
    jobs = [(f"ext{i + 1:06d}", r) for i, r in enumerate(chosen.to_dict("records"))]
    chunks = [jobs[i :: n_jobs * 4] for i in range(n_jobs * 4)]
    t0 = time.time()
    results = []
    with bar(total=len(jobs), desc="outside faces", unit="face") as progress:
        for r in Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(_person_job)(c, str(images), landmarks, templates, cfg.seed, e.framing, geometry, walls)
                for c in chunks if c):
            results.append(r)
            progress.update(len(r))
    overlay_s = time.time() - t0
    made = dict(pid_folder for r in results for pid_folder in r)
    by_id = dict(jobs)
    rows = [{"id": pid, "gender": by_id[pid]["gender"], "race": by_id[pid]["race"], "age": by_id[pid]["age"],
             "path": folder, "source_file": by_id[pid]["file"]} for pid, folder in sorted(made.items()) if folder]
    no_face = sum(1 for v in made.values() if v is None)
    table = pd.DataFrame(rows, columns=["id", "gender", "race", "age", "path", "source_file"])
    atomic_write_csv(table, extra_train_csv(root))
    if len(table):
        contact_sheet(images, table, external_sheet_png(cfg.run_dir), sheet_persons)
    detector = _train_detector(images, table, cfg.run_dir, log)
    summary = {"imported": len(faces), "malformed": len(malformed), "selected": len(chosen), "no_face": no_face,
               "persons": len(table), "photos": len(table) * len(PHOTOS), "framing": e.framing,
               "geometry_from": len(geometry) if geometry is not DEFAULT_GEOMETRY else 0,
               "masked_face_detector": detector, "overlay_seconds": round(overlay_s, 2),
               "faces_per_second": round(len(chosen) / overlay_s, 2) if overlay_s else None,
               "seconds": round(time.time() - start, 2)}
    atomic_write_text(stage_summary(root), json.dumps(summary, indent=1))
    write_record(root, ExtraRecord(source="external", whole_persons=True, photo_ids=False, photos=len(table),
                                   hint="run `maskfold external` with this config"))
    log(f"no face found in {no_face} of {len(chosen)} photos (skipped); wrote {len(table)} pseudo-persons "
        f"({summary['photos']} photos) to {images.parent}")
    log(f"overlay throughput: {summary['faces_per_second']} faces/s ({n_jobs} processes); "
        f"contact sheet: {external_sheet_png(cfg.run_dir)}")
    return summary


def probe_external(cfg: Config, n_jobs: int = 2, log=print) -> dict | None:
    """Run the domain probe on the written external photos; its figures go to external/probe.json."""
    from external_data.probe import run_probe

    table = extra_train_csv(external_dir(cfg.run_dir))
    if not table.is_file():
        raise MissingInput(f"{table}: no external photos to probe; run `maskfold external` without --probe first")
    result = run_probe(cfg, n_jobs=n_jobs, log=log)
    atomic_write_text(external_probe_json(cfg.run_dir), json.dumps(result, indent=1))
    return result
