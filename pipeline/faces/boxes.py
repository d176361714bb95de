"""Face boxes for `data.crop: face`: found once per photo, cached, and shared by every run.

`data.face_detector` is a chain of detectors joined by '+', tried in order until one finds a face:
- hog: dlib's HOG frontal face detector (about 30 ms a photo); it misses most faces behind a mask.
- cnn: dlib's CNN (MMOD) face detector on a 256 px copy, upsampled once (about 0.85 s a photo on one CPU core).
- masked: a HOG detector trained (train_masked_detector) by `maskfold external` on its own pseudo-persons in every
  mask state, each photo labelled with the box that `hog` finds on the same person's unmasked photo (same
  framing), so it finds masked faces and returns boxes like hog's (about 13 ms a photo). The detector and its
  file (layout.masked_detector) are the core's: the stage only hands it photos, so nothing here knows the stage.

Only a box a portrait can have is taken (width 15-90% of the photo's, centred in its middle), the best-scoring
one. Boxes are cached per detector under <cache_dir>/faces/, keyed by each photo's content digest (and the masked
detector's own digest), so `hog+cnn` reuses the boxes `hog` found and the slow CNN runs once per photo, ever.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed

from pipeline.errors import MissingInput
from pipeline.faces import landmarks as faces
from pipeline.io import atomic_path, atomic_write_text, file_lock
from pipeline.layout import masked_detector
from pipeline.progress import bar

DETECTORS = ("hog", "cnn", "masked")
_LOADED: dict = {}


def chain(text: str) -> list[str]:
    return [d.strip() for d in text.split("+")]


def bad_chain(text: str) -> str | None:
    """Why `data.face_detector` is not a valid chain, or None."""
    names = chain(text)
    unknown = [d for d in names if d not in DETECTORS]
    if unknown or len(set(names)) != len(names):
        return f"{text!r} must join {', '.join(DETECTORS)} with '+', each once (e.g. hog+cnn)"
    return None


def _small(img: np.ndarray, side: int):
    h, w = img.shape[:2]
    s = min(1.0, side / max(h, w))
    return (cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else img), s


def _best_portrait_box(img, candidates, s) -> list[float] | None:
    """The best-scoring (score, dlib rectangle) candidate that a portrait's face can be, in image pixels."""
    h, w = img.shape[:2]
    best = None
    for score, r in candidates:
        b = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) / s
        bw, cx, cy = b[2] - b[0], (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if 0.15 * w < bw < 0.9 * w and 0.15 * w < cx < 0.85 * w and cy < 0.8 * h and (best is None or score > best[0]):
            best = (score, b)
    return None if best is None else [round(float(v), 1) for v in best[1]]


def _model(name: str, path: str | None = None):
    key = (name, path)
    if key not in _LOADED:
        import dlib

        faces.require()
        if name == "hog":
            _LOADED[key] = dlib.get_frontal_face_detector()
        elif name == "cnn":
            _LOADED[key] = dlib.cnn_face_detection_model_v1(str(faces.model_file("mmod_human_face_detector.dat")))
        else:
            _LOADED[key] = dlib.fhog_object_detector(path)
    return _LOADED[key]


def detect(img: np.ndarray, name: str, model_path: str | None = None) -> list[float] | None:
    """One detector's face box (x0, y0, x1, y1) in image pixels, or None."""
    model = _model(name, model_path)
    if name == "cnn":
        small, s = _small(img, 256)
        return _best_portrait_box(img, [(d.confidence, d.rect) for d in model(small, 1)], s)
    small, s = _small(img, 320 if name == "hog" else 240)
    rects, scores, _ = model.run(small, 1, 0.0 if name == "hog" else -0.5)
    return _best_portrait_box(img, zip(scores, rects), s)


def _detect_files(files: list[str], name: str, model_path: str | None) -> list:
    from pipeline.data.images import read_rgb

    out = []
    for f in files:
        try:
            img = read_rgb(f)
        except Exception:  # noqa: BLE001 - a broken photo is named by the decoding that follows, not here
            out.append(None)
            continue
        out.append(detect(img, name, model_path))
    return out


def _cache_file(cache_dir, name: str, model_path: str | None) -> Path:
    from pipeline.data.images import DECODING

    tag = f"{name}-{DECODING}"  # boxes found on photos decoded otherwise (not turned upright) are found again
    if model_path:
        tag += "-" + hashlib.blake2b(Path(model_path).read_bytes(), digest_size=8).hexdigest()
    return Path(cache_dir) / "faces" / f"{tag}.json"


def detector_identity(text: str, run_dir) -> str:
    """What the photo cache's key needs: the chain, with the masked detector's content digest when it is used."""
    return "+".join(_cache_file(".", d, model_path(d, run_dir)).stem for d in chain(text))


def model_path(name: str, run_dir) -> str | None:
    if name != "masked":
        return None
    path = masked_detector(run_dir)
    if not path.is_file():
        raise MissingInput(f"{path}: data.face_detector uses 'masked' but there is no trained masked-face "
                                "detector; run `maskfold external` with this config first (it trains one when the "
                                "`faces` extra is installed and at least 10 pseudo-persons show a face), or set "
                                "data.face_detector: hog+cnn")
    return str(path)


def face_boxes(files: list, text: str, cache_dir, run_dir, n_jobs: int = 2, log=print) -> list:
    """A box (or None) per photo by the chain `text`; each detector runs only on photos no earlier one found a face
    in and that its own cache does not yet hold."""
    from pipeline.data.cache import content_digests

    detectors = []  # each detector with its model file and its box cache
    for name in chain(text):
        path = model_path(name, run_dir)
        detectors.append((name, path, _cache_file(cache_dir, name, path)))
    digests = content_digests([Path(f) for f in files], Path(cache_dir))
    found: list = [None] * len(files)
    for name, path, cache in detectors:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(cache.with_suffix(".lock"), wait=True):
            known = json.loads(cache.read_text()) if cache.is_file() else {}
            todo = [i for i in range(len(files)) if found[i] is None and digests[i] not in known]
            if todo:
                chunks = [todo[i : i + 16] for i in range(0, len(todo), 16)]
                with bar(total=len(todo), desc=f"faces ({name})", unit="photo") as progress:
                    for idx, boxes in zip(chunks, Parallel(n_jobs=n_jobs, return_as="generator")(
                            delayed(_detect_files)([str(files[i]) for i in c], name, path) for c in chunks)):
                        known.update({digests[i]: b for i, b in zip(idx, boxes)})
                        progress.update(len(idx))
                atomic_write_text(cache, json.dumps(known))
        found = [f if f is not None else known.get(d) for f, d in zip(found, digests)]
    return found


def train_masked_detector(persons: list[dict[str, str]], out: Path, max_persons: int = 90, log=print) -> bool:
    """Train the `masked` detector on pseudo-persons ({photo name: file}); False when too few faces to learn from.

    90 persons (630 photos) train in about 25 s on this kind of CPU; the training time grows faster than the count."""
    import dlib

    from pipeline.data.images import read_rgb

    images, boxes = [], []
    for person in persons[:max_persons]:
        normal = read_rgb(person["normal"])
        box = detect(normal, "hog")
        if box is None:
            continue
        for f in person.values():
            small, s = _small(read_rgb(f), 240)
            images.append(small)
            boxes.append([dlib.rectangle(*[round(v * s) for v in box])])
    if len(images) < 70:
        log(f"masked-face detector: only {len(images)} photos with a face to learn from; not trained")
        return False
    options = dlib.simple_object_detector_training_options()
    options.add_left_right_image_flips = True
    options.C = 5
    options.num_threads = 2
    options.detection_window_size = 80 * 80
    detector = dlib.train_simple_object_detector(images, boxes, options)
    with atomic_path(out) as tmp:
        detector.save(str(tmp))
    log(f"masked-face detector trained on {len(images)} photos of {len(images) // 7} pseudo-persons: {out}")
    return True
