"""`data.crop: face`: every photo cropped to its detected face box plus a margin, the same for competition,
external and eval photos, so outside faces (often tight crops) and competition portraits meet in one framing.
A photo with no detected face gets a centre crop instead; the cache counts those.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.config.schema import DataConfig
from pipeline.faces import landmarks as faces


def crop_function(data_cfg: DataConfig):
    """What the photo cache applies to each photo: None (whole photo) or a FaceCropper."""
    return None if data_cfg.crop == "none" else FaceCropper(data_cfg.crop_margin)


class FaceCropper:
    def __init__(self, margin: float = 0.6):
        self.margin = margin
        faces.require()  # fail at once, with the install hint, when the extra is missing

    def box(self, img: np.ndarray, aspect: float):
        h, w = img.shape[:2]
        found = faces.detect_box(img)
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

    def __call__(self, img: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
        (x0, y0, x1, y1), found = self.box(img, size[0] / size[1])
        crop = img[y0:y1, x0:x1]
        return cv2.resize(crop, tuple(size), interpolation=cv2.INTER_AREA), found
