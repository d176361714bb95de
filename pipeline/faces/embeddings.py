"""Face-recognition embeddings: dlib's ResNet (the `faces` extra's face_recognition_models) gives each photo a
128-d vector, on the face chip that dlib's 5-point landmarks align, and on its mirror image (the hflip view).

Which face box a photo is embedded from (BOX_KINDS):
- found: the `data.face_detector` chain found one (pipeline.faces.boxes, cached per photo);
- borrowed: a training photo whose face was not found takes the box found on the same person's unmasked photo (a
  person's seven photos share one framing, and masks hide what the detectors look for);
- prior: any other photo takes the median box of the training photos' found boxes, relative to the photo's size
  (FALLBACK_BOX where none was found at all).

Embeddings are cached once per photo, ever: under <cache_dir>/embeddings/<models' digest>/, keyed by the photo's
content digest and its box, in shard files of up to CHUNK photos, each written atomically as its chunk is done, so
a killed run keeps what it computed and every run on the same photos computes nothing again.
"""
from __future__ import annotations

import hashlib
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.io import atomic_save_npz, remove_stale_temporaries
from pipeline.progress import bar

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"
DIM = 128
VIEWS = ("orig", "hflip")  # the views each photo is embedded in, in this order
BOX_KINDS = ("found", "borrowed", "prior")
FALLBACK_BOX = (0.25, 0.2, 0.75, 0.7)  # x0, y0, x1, y1 relative to the photo: a portrait's face, roughly
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what the recognition network was trained on
CHUNK = 32
_LOADED: dict = {}


def missing_extra() -> str | None:
    """Why embeddings cannot be computed here (the `faces` extra is missing), or None; imports nothing heavy."""
    from pipeline.faces.landmarks import missing_extra as missing

    return missing()


def _models():
    if "net" not in _LOADED:
        import dlib

        from pipeline.faces.landmarks import model_file

        _LOADED["landmarks"] = dlib.shape_predictor(str(model_file(LANDMARK_MODEL)))
        _LOADED["net"] = dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL)))
    return _LOADED


def model_digest() -> str:
    """The two model files' identity (content), so that another model never reads these embeddings."""
    from pipeline.data.images import DECODING
    from pipeline.faces.landmarks import model_file

    if "digest" not in _LOADED:
        h = hashlib.blake2b(digest_size=8)
        for name in (LANDMARK_MODEL, RECOGNITION_MODEL):
            h.update(model_file(name).read_bytes())
        _LOADED["digest"] = f"{DECODING}-{h.hexdigest()}"
    return _LOADED["digest"]


def box_text(box, relative: bool) -> str:
    """A box as the cache key spells it: pixels (found, borrowed) or fractions of the photo's size (prior)."""
    return ("rel:" + ",".join(f"{v:.4f}" for v in box)) if relative else ("px:" + ",".join(f"{v:.1f}" for v in box))


def _pixels(spec: str, w: int, h: int) -> list[float]:
    kind, _, values = spec.partition(":")
    box = [float(v) for v in values.split(",")]
    return [box[0] * w, box[1] * h, box[2] * w, box[3] * h] if kind == "rel" else box


def embed_image(img: np.ndarray, spec: str) -> np.ndarray:
    """(len(VIEWS), DIM) float32: the face chip of `img` inside the box `spec` (box_text), and its mirror image."""
    import dlib

    m = _models()
    h, w = img.shape[:2]
    x0, y0, x1, y1 = _pixels(spec, w, h)
    rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
    chip = dlib.get_face_chip(img, m["landmarks"](img, rect), CHIP_SIZE, CHIP_PADDING)
    views = [chip, np.ascontiguousarray(chip[:, ::-1])]
    return np.asarray(m["net"].compute_face_descriptor(views), dtype=np.float32)


def _embed_files(files: list[str], specs: list[str]) -> np.ndarray:
    from pipeline.data.images import read_rgb

    return np.stack([embed_image(read_rgb(f), s) for f, s in zip(files, specs)])


# -- boxes


def relative_box(box, shape) -> list[float] | None:
    """A pixel box as fractions of its photo's (width, height), or None when the photo cannot be read."""
    if box is None or shape is None:
        return None
    w, h = shape[:2]
    return [box[0] / w, box[1] / h, box[2] / w, box[3] / h]


def prior_box(found: list, files: list) -> list[float]:
    """The median of the found boxes relative to their photos (FALLBACK_BOX where none was found)."""
    from pipeline.data.images import photo_shape

    rel = [r for r in (relative_box(b, photo_shape(f)) for b, f in zip(found, files) if b is not None) if r]
    return [round(float(v), 4) for v in np.median(rel, axis=0)] if rel else list(FALLBACK_BOX)


def assign_boxes(found: list, persons: list | None, masks: list | None, prior: list[float]) -> tuple[list, list]:
    """Each photo's box spec and its kind: found; else (where persons and masks are given, the training photos) the
    box found on the same person's unmasked photo; else the prior box. persons/masks entries may be None (a photo
    with no person, e.g. an eval photo)."""
    normal = {}
    if persons is not None:
        for b, p, m in zip(found, persons, masks):
            if b is not None and p is not None and m == "normal":
                normal.setdefault(p, b)
    specs, kinds = [], []
    for i, b in enumerate(found):
        if b is not None:
            specs.append(box_text(b, False)), kinds.append("found")
        elif persons is not None and persons[i] in normal:
            specs.append(box_text(normal[persons[i]], False)), kinds.append("borrowed")
        else:
            specs.append(box_text(prior, True)), kinds.append("prior")
    return specs, kinds


def usable_chain(chain_text: str, run_dir) -> tuple[str, str | None]:
    """The detector chain the embeddings use: data.face_detector, less `masked` where this run has not trained it
    (a run without outside faces); and a note saying so, or None."""
    from pipeline.faces.boxes import chain
    from pipeline.layout import masked_detector

    names = chain(chain_text)
    if "masked" in names and not masked_detector(run_dir).is_file():
        kept = [n for n in names if n != "masked"] or ["hog"]
        return "+".join(kept), (f"face embeddings: no masked-face detector in this run ({masked_detector(run_dir)}); "
                                f"boxes from {'+'.join(kept)} only")
    return chain_text, None


# -- the cache


def store_dir(cache_dir) -> Path:
    return Path(cache_dir) / "embeddings" / model_digest()


def _load_store(folder: Path) -> dict[str, np.ndarray]:
    known = {}
    for shard in sorted(folder.glob("*.npz")):
        try:
            with np.load(shard) as z:
                known.update(zip(z["keys"].tolist(), z["vectors"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged (cut short, emptied,
            continue  # not a zip): its photos are embedded again and the shard rewritten
    return known


def embed(files: list, specs: list[str], cache_dir, n_jobs: int = 2, log=print, desc: str = "embeddings") -> tuple:
    """(N, len(VIEWS), DIM) embeddings of `files` from their box specs, from and into the cache; (vectors, how many
    were computed now, seconds spent on them)."""
    from joblib import Parallel, delayed

    from pipeline.data.cache import content_digests

    digests = content_digests([Path(f) for f in files], Path(cache_dir))
    keys = [f"{d}|{s}" for d, s in zip(digests, specs)]
    folder = store_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)  # a killed run's half-written shard (its finished ones are whole)
    known = _load_store(folder)
    todo = list(dict.fromkeys(k for k in keys if k not in known))
    start = time.time()
    if todo:
        where = {k: i for i, k in reversed(list(enumerate(keys)))}
        chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
        log(f"face embeddings: {len(todo)} photos to embed ({len(keys) - len(todo)} cached), {n_jobs} processes")
        jobs = (delayed(_embed_files)([str(files[where[k]]) for k in c], [specs[where[k]] for k in c]) for c in chunks)
        quarter = max(1, len(chunks) // 4)
        with bar(total=len(todo), desc=desc, unit="photo") as progress:
            done = 0
            results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
            for n, (chunk, vectors) in enumerate(zip(chunks, results), 1):
                name = hashlib.blake2b("\n".join(chunk).encode(), digest_size=12).hexdigest()
                atomic_save_npz(folder / f"{name}.npz", keys=np.array(chunk), vectors=vectors)
                known.update(zip(chunk, vectors))
                progress.update(len(chunk))
                done += len(chunk)
                if progress.disable and n % quarter == 0 and done < len(todo):  # no bar: a line now and then
                    left = (time.time() - start) / done * (len(todo) - done)
                    log(f"face embeddings: {done}/{len(todo)} photos, about {left / 60:.1f} min left")
    seconds = time.time() - start
    if todo:
        log(f"face embeddings: {len(todo)} photos embedded in {seconds:.0f}s "
            f"({1000 * seconds / len(todo):.0f} ms a photo, {n_jobs} processes)")
    return np.stack([known[k] for k in keys]) if keys else np.zeros((0, len(VIEWS), DIM), np.float32), len(todo), \
        seconds


def box_counts(kinds: list[str]) -> str:
    return ", ".join(f"{kinds.count(k)} {k}" for k in BOX_KINDS)


# -- a run's photos


@dataclass
class RunEmbeddings:
    """A run's embeddings: its training photos' (folds.csv order) and eval photos' (eval/info.csv order)."""
    train: np.ndarray  # (N, len(VIEWS), DIM)
    eval: np.ndarray | None  # (M, len(VIEWS), DIM), None without an eval set
    prior: list[float]  # the prior box (relative), which new photos take too (`maskfold predict`)
    chain: str  # the detector chain the boxes came from
    kinds: dict  # "train" / "eval" -> each photo's box kind
    computed: int
    seconds: float


def default_jobs() -> int:
    """Processes that embed photos: one per core."""
    import os

    return os.cpu_count() or 1


def run_embeddings(cfg, folds, evals, log=print, n_jobs: int | None = None) -> RunEmbeddings:
    """Every training and eval photo of a run embedded (from the cache where it can), with its box kinds counted."""
    from pipeline.faces.boxes import face_boxes
    from pipeline.tables.fields import image_file

    n_jobs = n_jobs or default_jobs()
    chain_text, note = usable_chain(cfg.data.face_detector, cfg.run_dir)
    if note:
        log(note)
    files = [image_file(cfg.data_dir, p) for p in folds["path"]]
    eval_files = [image_file(cfg.data_dir, p) for p in evals["path"]] if evals is not None else []
    found = face_boxes(files + eval_files, chain_text, cfg.cache_dir, cfg.run_dir, n_jobs=n_jobs, log=log)
    prior = prior_box(found[: len(files)], files)
    specs, kinds = assign_boxes(found[: len(files)], folds["person_id"].astype(str).tolist(),
                                folds["mask"].tolist(), prior)
    eval_specs, eval_kinds = assign_boxes(found[len(files):], None, None, prior)
    vectors, computed, seconds = embed(files + eval_files, specs + eval_specs, cfg.cache_dir, n_jobs, log)
    log(f"face boxes of the embeddings ({chain_text}): training photos {box_counts(kinds)}"
        + (f"; eval photos {box_counts(eval_kinds)}" if eval_files else ""))
    return RunEmbeddings(vectors[: len(files)], vectors[len(files):] if eval_files else None, prior, chain_text,
                         {"train": kinds, "eval": eval_kinds}, computed, seconds)


def new_photo_embeddings(files: list, chain_text: str, prior: list[float], cache_dir, run_dir, log=print,
                         n_jobs: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Photos of no known person (`maskfold predict`): the detectors' box, else the run's prior box."""
    from pipeline.faces.boxes import face_boxes

    n_jobs = n_jobs or default_jobs()
    found = face_boxes(files, chain_text, cache_dir, run_dir, n_jobs=n_jobs, log=log)
    specs, kinds = assign_boxes(found, None, None, prior)
    vectors, _, _ = embed(files, specs, cache_dir, n_jobs, log)
    return vectors, kinds
