"""What `external.framing: portrait` copies from the competition photos: where faces sit, and the walls behind them.

Landmarks are found on the unmasked (`normal`) photos of a sample of competition persons; each gives the nose's
position and the jaw's width, scaled to the 384x512 canvas the external stage writes. The top strip of each of
those photos (above every head) is kept as a wall to put behind an external face.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from external_data.persons import DEFAULT_GEOMETRY, H, W
from pipeline.data.images import read_rgb
from pipeline.tables.fields import image_file


def face_geometry(img: np.ndarray) -> np.ndarray | None:
    """(nose x, nose y, jaw width) in canvas pixels for one competition photo, or None when no face is found."""
    from pipeline.faces import landmarks as faces

    lm = faces.landmarks68(img, max_side=320, upsample=1)  # a portrait's face needs one upsampling at 320 px
    if lm is None:
        return None
    sx, sy = W / img.shape[1], H / img.shape[0]
    nose = lm[27:36].mean(axis=0)
    return np.array([nose[0] * sx, nose[1] * sy, np.linalg.norm(lm[16] - lm[0]) * sx])


WALL_ROWS = 0.08  # the top 8% of a portrait is wall or ceiling, above the tallest hair
WALL_SIZE = (W, 24)  # width, height a wall strip is kept at; it is stretched to the canvas when used


def wall_strip(img: np.ndarray) -> np.ndarray:
    top = img[: max(1, round(WALL_ROWS * img.shape[0]))]
    return cv2.resize(top, WALL_SIZE, interpolation=cv2.INTER_AREA)


def competition_framing(train: pd.DataFrame, data_dir: str, persons: int = 200, seed: int = 0, log=print,
                        wall_photos: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(geometry (n, 3), walls (m, h, w, 3)) from up to `persons` normal photos.

    Walls come from `wall_photos` when given: eval photos, which no validation fold holds, so nothing of a
    validation person reaches the external photos that every training fold sees. Without measurable faces the
    geometry is DEFAULT_GEOMETRY; without photos the walls are None (drawn walls)."""
    from pipeline.faces import landmarks as faces

    normal = train[train["photo"] == "normal"]
    normal = normal.sample(min(persons, len(normal)), random_state=seed) if len(normal) else normal
    photos = [read_rgb(image_file(data_dir, p)) for p in normal["path"]]
    if wall_photos:
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(wall_photos), min(persons, len(wall_photos)), replace=False)
        walls = np.stack([wall_strip(read_rgb(wall_photos[i])) for i in sorted(picked)])
    else:
        walls = np.stack([wall_strip(img) for img in photos]) if photos else None
    if not faces.available():
        log("face geometry: the `faces` extra is missing, so external faces use one fixed scale and position")
        return DEFAULT_GEOMETRY, walls
    found = [g for img in photos if (g := face_geometry(img)) is not None]
    # A face far from a portrait's usual size is a false detection, not a framing to copy.
    found = [g for g in found if 0.2 * W < g[2] < 0.8 * W]
    if len(found) < 10:
        log(f"face geometry: only {len(found)} competition faces measured; external faces use one fixed framing")
        return DEFAULT_GEOMETRY, walls
    g = np.array(found)
    log(f"face geometry from {len(g)} of {len(normal)} competition photos: nose at x {np.median(g[:, 0]):.0f}, "
        f"y {np.median(g[:, 1]):.0f}, jaw width {np.median(g[:, 2]):.0f} px (median, on 384x512)")
    return g, walls
