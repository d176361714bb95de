"""Face boxes and 68-point landmarks through dlib (the optional `faces` extra), found offline.

dlib's HOG detector misses faces that fill the whole frame (tight crops such as UTKFace's), so detection runs on
a copy padded by half the image size on every side, and coordinates are mapped back.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import MaskfoldError

_MODELS: dict = {}


class FacesUnavailable(MaskfoldError, RuntimeError):
    """Face landmarks or boxes are needed but dlib or its models (the faces extra) are missing. Fix: pip install
    'maskfold[faces]', or set data.crop: none (and external.landmarks: file where the faces ship landmarks)."""


def model_file(name: str) -> Path:
    """A model file that face_recognition_models ships (68-point predictor, CNN detector)."""
    # face_recognition_models imports pkg_resources, which new setuptools no longer ships: locate its files
    # without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FacesUnavailable("face landmarks need the `faces` extra: pip install 'maskfold[faces]'")
    return Path(spec.origin).parent / "models" / name


def _models():
    if not _MODELS:
        try:
            import dlib
        except ImportError:
            raise FacesUnavailable("face detection needs the `faces` extra: pip install 'maskfold[faces]'") from None
        _MODELS["detector"] = dlib.get_frontal_face_detector()
        _MODELS["predictor"] = dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))
        _MODELS["rect"] = dlib.rectangle
    return _MODELS


def require() -> None:
    """Load dlib's models now, raising FacesUnavailable (with the install hint) when the extra is missing."""
    _models()


def missing_extra() -> str | None:
    """Why faces cannot be found here (the `faces` extra is not installed, with the pip line), or None; looked up
    without loading dlib or its models."""
    if any(importlib.util.find_spec(name) is None for name in ("dlib", "face_recognition_models")):
        return "the `faces` extra (dlib) is not installed: pip install 'maskfold[faces]'"
    return None


def available() -> bool:
    try:
        require()
        return True
    except FacesUnavailable:
        return False


def _padded(img: np.ndarray, max_side: int):
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else img
    pad = max(small.shape[:2]) // 2
    padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return padded, scale, pad


def landmarks68(img: np.ndarray, max_side: int = 320, upsample: int = 0) -> np.ndarray | None:
    """(68, 2) float32 landmarks of the largest face, in image pixels, or None when no face is found.

    The default suits face crops (UTKFace-like), where the face fills the photo: no upsampling, 3x faster.
    """
    padded, scale, pad = _padded(img, max_side)
    rects = _models()["detector"](padded, upsample)
    if not rects:
        return None
    shape = _models()["predictor"](padded, max(rects, key=lambda r: r.width() * r.height()))
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    return (pts - pad) / scale
