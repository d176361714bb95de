"""`data.crop: face`: every photo cropped to its detected face box plus a margin, the same for competition,
external and eval photos, so outside faces (often tight crops) and competition portraits meet in one framing.
Boxes come from pipeline.faces.boxes (the `data.face_detector` chain, cached once per photo). A photo with no
detected face gets a centre crop instead; the cache counts those.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from pipeline.config.schema import DataConfig
from pipeline.faces import boxes as face_boxes
from pipeline.faces import landmarks as faces
from pipeline.labels import MASKS


def crop_key(data_cfg: DataConfig, run_dir) -> str:
    """The crop's part of the photo cache's key: the mode, margin and detectors (with the trained one's digest)."""
    if data_cfg.crop == "none":
        return "none"
    return f"{data_cfg.crop}:{data_cfg.crop_margin}:{face_boxes.detector_identity(data_cfg.face_detector, run_dir)}"


def crop_function(data_cfg: DataConfig, files=None, cache_dir=None, run_dir=None, log=print):
    """What the photo cache applies to each photo: None (whole photo) or a FaceCropper.

    With `files`, their boxes are found first (in parallel, from and into the box cache)."""
    if data_cfg.crop == "none":
        return None
    faces.require()  # fail at once, with the install hint, when the extra is missing
    found = None
    if files is not None:
        found = dict(zip(map(str, files), face_boxes.face_boxes(files, data_cfg.face_detector, cache_dir, run_dir,
                                                                log=log)))
    model = face_boxes.model_path("masked", run_dir) if "masked" in face_boxes.chain(data_cfg.face_detector) else None
    return FaceCropper(data_cfg.crop_margin, found, data_cfg.face_detector, model)


class FaceCropper:
    def __init__(self, margin: float = 0.6, found: dict | None = None, detector: str = "hog",
                 masked_model: str | None = None):
        self.margin, self.found, self.detector, self.masked_model = margin, found or {}, detector, masked_model

    def detect(self, img: np.ndarray, file=None):
        """The box found beforehand for `file`, else the chain run on the spot (photos outside the box cache)."""
        if file is not None and str(file) in self.found:
            return self.found[str(file)]
        for name in face_boxes.chain(self.detector):
            if name == "masked" and self.masked_model is None:  # built by hand without one: the others only
                continue
            box = face_boxes.detect(img, name, self.masked_model)
            if box is not None:
                return box
        return None

    def box(self, img: np.ndarray, aspect: float, file=None):
        h, w = img.shape[:2]
        found = self.detect(img, file)
        if found is None:
            bw = w * 0.6
            cx, cy = w / 2, h * 0.45
        else:
            x0, y0, x1, y1 = found
            bw = (x1 - x0) * (1 + 2 * self.margin)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        bh = bw / aspect
        x0 = int(np.clip(cx - bw / 2, 0, max(0, w - bw)))
        y0 = int(np.clip(cy - bh / 2, 0, max(0, h - bh)))
        return (x0, y0, int(min(w, x0 + bw)), int(min(h, y0 + bh))), found is not None

    def __call__(self, img: np.ndarray, size: tuple[int, int], file=None) -> tuple[np.ndarray, bool]:
        (x0, y0, x1, y1), found = self.box(img, size[0] / size[1], file)
        crop = img[y0:y1, x0:x1]
        return cv2.resize(crop, tuple(size), interpolation=cv2.INTER_AREA), found


def face_share(crop: FaceCropper, folds: pd.DataFrame, files, eval_files, detector: str) -> str:
    """The share of photos with a detected face, per mask state (competition, external) and for the eval set."""
    found = np.array([crop.found.get(str(f)) is not None for f in files])
    source = folds["source"].to_numpy()
    mask = folds["mask"].to_numpy()
    parts = []
    for name, rows in (("competition", source == "train"), ("external", source == "external"),
                       ("pseudo-labelled", source == "pseudo")):
        if rows.any():
            shares = [f"{m} {found[rows & (mask == m)].mean():.1%}" for m in MASKS if (rows & (mask == m)).any()]
            parts.append(f"{name}: {' · '.join(shares)}")
    if eval_files:
        parts.append(f"eval: {np.mean([crop.found.get(str(f)) is not None for f in eval_files]):.1%}")
    return f"faces found ({detector}) — " + "; ".join(parts)
