"""One outside face -> one pseudo-person in the competition layout: normal, mask1..5, incorrect_mask.

The original photo is first framed the way competition photos are (384x512 portrait, face at the usual place
and scale, the rest filled with a blurred copy of the photo) so that a tight face crop does not become a
shortcut the model can use to tell external photos apart.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces.masks import PROCEDURAL_KINDS, MaskTemplate, pick_variant, place_mask, procedural_mask

W, H = 384, 512
FACE_WIDTH = 0.45 * W  # jaw-to-jaw width of a competition face, in pixels
FACE_CENTRE = (W / 2, 250.0)  # where the nose sits in a competition photo
SKIP_TEMPLATES = ("gas",)  # a gas mask is not a face mask anyone wears to the shops


def frame_like_competition(img: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    face_w = float(np.linalg.norm(lm[16] - lm[0]))
    centre = lm[27:36].mean(axis=0)
    s = FACE_WIDTH / max(face_w, 1.0)
    M = np.array([[s, 0, FACE_CENTRE[0] - s * centre[0]], [0, s, FACE_CENTRE[1] - s * centre[1]]])
    fg = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    valid = cv2.warpAffine(np.full(img.shape[:2], 255, np.uint8), M, (W, H))
    # A wide soft edge: the sharp photo fades into its blurred fill instead of sitting in it as a square.
    edge = max(3, int(0.06 * s * min(img.shape[:2])))
    valid = cv2.erode(valid, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8))
    valid = cv2.GaussianBlur(valid, (0, 0), edge).astype(np.float32)[..., None] / 255
    bg = cv2.GaussianBlur(cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR), (0, 0), 20)
    out = (fg * valid + bg * (1 - valid)).astype(np.uint8)
    return out, (lm @ M[:, :2].T + M[:, 2]).astype(np.float32)


def mask_pool(templates: dict[str, MaskTemplate] | None) -> list[str]:
    """Names of the masks a person can wear: the procedural kinds plus each template base (no left/right)."""
    bases = [n for n in (templates or {}) if not n.endswith(("_left", "_right")) and n not in SKIP_TEMPLATES]
    return [f"procedural:{k}" for k in PROCEDURAL_KINDS] + [f"template:{b}" for b in sorted(bases)]


def get_mask(name: str, templates, lm, rng) -> MaskTemplate:
    kind, base = name.split(":", 1)
    if kind == "procedural":
        return procedural_mask(base, rng)
    return pick_variant(templates, base, lm)


def make_person(img: np.ndarray, lm: np.ndarray, templates, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The seven photos; mask1..5 wear five different masks, incorrect_mask is under the nose or on the chin."""
    framed, flm = frame_like_competition(img, lm)
    pool = mask_pool(templates)
    order = list(rng.permutation(len(pool)))
    names = [pool[i] for i in (order * 5)[:5]]  # five different masks while the pool has five
    photos, worn = {"normal": framed}, set()
    for i, name in enumerate(names, start=1):
        mask = get_mask(name, templates, flm, rng)
        for _ in range(10):  # a drawn mask may repeat another's kind and colour: draw again
            if mask.name not in worn:
                break
            mask = get_mask(name, templates, flm, rng)
        worn.add(mask.name)
        photos[f"mask{i}"], _ = place_mask(framed, flm, mask, "worn")
    mode = "under_nose" if rng.random() < 0.6 else "chin"
    photos["incorrect_mask"], _ = place_mask(framed, flm, get_mask(pool[rng.integers(len(pool))], templates, flm, rng),
                                             mode)
    return photos
