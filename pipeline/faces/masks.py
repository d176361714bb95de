"""Masks put on faces from 68-point landmarks: procedural masks and MaskTheFace templates.

One home for the mask-drawing code: the demo generator draws its masks with it (from the portrait's known
landmarks) and the external-data stage uses it on real faces. Every mask, drawn or loaded, carries six anchor
points in MaskTheFace's convention: a and c = jaw at nose-tip height (left, right), b = middle of the nose bridge,
d and f = jaw at lower-lip height (left, right), e = chin. A homography maps them onto the same six points
derived from the face's landmarks for the chosen way of wearing.
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from pipeline.errors import BadInput, MissingInput

WEAR_MODES = ("worn", "under_nose", "chin")

# dlib's 68-point indices used here
JAW = slice(0, 17)
CHIN = 8
NOSE_BRIDGE_MID = 28
NOSE_TIP = 30
UNDER_NOSE = 33
UPPER_LIP_TOP = 51
LOWER_LIP_BOTTOM = 57


@dataclass
class MaskTemplate:
    name: str
    rgba: np.ndarray  # (H, W, 4) uint8
    anchors: np.ndarray  # (6, 2) float32: a, b, c, d, e, f in template pixels


# ---------------------------------------------------------------- anchors from landmarks


def _jaw_x_at(jaw: np.ndarray, y: float) -> tuple[float, float]:
    """x of the left (points 0-8) and right (8-16) jaw line at height y, by linear interpolation."""
    left, right = jaw[:9], jaw[8:][::-1]
    xs = []
    for side in (left, right):
        order = np.argsort(side[:, 1])
        xs.append(float(np.interp(y, side[order, 1], side[order, 0])))
    return xs[0], xs[1]


def face_anchors(landmarks: np.ndarray, mode: str = "worn") -> np.ndarray:
    """Six target anchors (a..f) on a face for a way of wearing: worn, under_nose or chin."""
    lm = np.asarray(landmarks, dtype=np.float32)
    jaw = lm[JAW]
    chin = lm[CHIN]
    lip = lm[LOWER_LIP_BOTTOM]
    face_h = chin[1] - lm[27][1]
    if mode == "worn":
        top = lm[NOSE_BRIDGE_MID]
        upper_y = lm[NOSE_TIP][1]
        lower_y = lip[1]
        bottom = chin + np.array([0, 0.04 * face_h])
    elif mode == "under_nose":
        # Upper edge just below the nostrils: nose tip visible, mouth covered.
        top = lm[UNDER_NOSE] + np.array([0, 0.25 * (lm[UPPER_LIP_TOP][1] - lm[UNDER_NOSE][1])])
        upper_y = top[1] + 0.12 * face_h
        lower_y = lip[1] + 0.5 * (chin[1] - lip[1])
        bottom = chin + np.array([0, 0.10 * face_h])
    elif mode == "chin":
        # Pulled down onto the chin: mouth and nose visible.
        top = lip + np.array([0, 0.12 * face_h])
        upper_y = top[1] + 0.12 * face_h
        lower_y = chin[1]
        bottom = chin + np.array([0, 0.22 * face_h])
    else:
        raise ValueError(f"unknown wear mode {mode!r}; use one of {WEAR_MODES}")
    ax, cx = _jaw_x_at(jaw, upper_y)
    dx, fx = _jaw_x_at(jaw, min(lower_y, chin[1] - 1e-3))
    if mode != "worn":
        # Below the chin the jaw line ends; keep the mask's width instead of collapsing it.
        width = max(cx - ax, 0.6 * (jaw[16][0] - jaw[0][0]))
        mid = (ax + cx) / 2
        ax, cx = mid - width / 2, mid + width / 2
        dwidth = max(fx - dx, 0.85 * width)
        dmid = (dx + fx) / 2
        dx, fx = dmid - dwidth / 2, dmid + dwidth / 2
    return np.array(
        [[ax, upper_y], top, [cx, upper_y], [dx, lower_y], bottom, [fx, lower_y]], dtype=np.float32
    )


def yaw_side(landmarks: np.ndarray) -> str:
    """'left', 'right' or '' (frontal): which MaskTheFace variant suits the head's turn."""
    lm = np.asarray(landmarks, dtype=np.float32)
    nose = lm[NOSE_TIP][0]
    left, right = nose - lm[0][0], lm[16][0] - nose
    ratio = left / max(right, 1e-6)
    if ratio < 0.6:
        return "left"
    if ratio > 1 / 0.6:
        return "right"
    return ""


# ---------------------------------------------------------------- placing a mask


def place_mask(
    image: np.ndarray, landmarks: np.ndarray, template: MaskTemplate, mode: str = "worn", feather: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a mask onto an RGB image. Returns (new image, alpha in 0..1 of the placed mask)."""
    h, w = image.shape[:2]
    dst = face_anchors(landmarks, mode)
    H, _ = cv2.findHomography(template.anchors.astype(np.float32), dst, 0)
    # Work only in the box the warped template can reach: a mask covers a small part of a portrait.
    th, tw = template.rgba.shape[:2]
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [tw, 0], [0, th], [tw, th]]], np.float32), H)[0]
    k = int(max(3, feather * max(h, w))) | 1
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - k, 0, [w, h])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + k, 0, [w, h])
    alpha_full = np.zeros((h, w), np.float32)
    if x1 <= x0 or y1 <= y0:
        return image.copy(), alpha_full
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64)
    warped = cv2.warpPerspective(template.rgba, shift @ H, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                                 borderValue=(0, 0, 0, 0))
    alpha = warped[..., 3].astype(np.float32) / 255.0
    alpha = cv2.GaussianBlur(alpha, (k, k), 0)  # soft edge instead of a cut-out look
    rgb = np.clip(warped[..., :3].astype(np.float32) * _brightness_gain(image, landmarks), 0, 255)
    out = image.copy()
    roi = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (roi * (1 - alpha[..., None]) + rgb * alpha[..., None]).astype(np.uint8)
    alpha_full[y0:y1, x0:x1] = alpha
    return out, alpha_full


def _brightness_gain(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Scale the mask to the face's lighting: mean luminance of the cheeks/forehead against a mid-grey face."""
    lm = np.asarray(landmarks)
    x0, y0 = np.maximum(lm[[36, 19]].min(axis=0).astype(int), 0)
    x1, y1 = lm[[45, 30]].max(axis=0).astype(int)
    patch = image[max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)]
    if patch.size == 0:
        return 1.0
    lum = float(patch.mean())
    return float(np.clip(lum / 150.0, 0.45, 1.15))


# ---------------------------------------------------------------- MaskTheFace templates


def load_maskthe_face(folder: str | Path) -> dict[str, MaskTemplate]:
    """Templates from a MaskTheFace folder (the one holding masks/masks.cfg)."""
    folder = Path(folder)
    cfg_path = folder / "masks" / "masks.cfg"
    if not cfg_path.is_file():
        raise MissingInput(f"{cfg_path}: MaskTheFace config not found; point external.templates at the folder holding masks/")
    parser = configparser.ConfigParser()
    parser.read(cfg_path)
    out = {}
    for name in parser.sections():
        sec = parser[name]
        if "template" not in sec:
            continue  # MaskTheFace's own placeholders ('empty', 'inpaint') carry no image
        try:
            anchors = np.array(
                [[float(v) for v in sec[f"mask_{k}"].split(",")] for k in "abcdef"], dtype=np.float32
            )
            rgba = np.asarray(Image.open(folder / sec["template"].strip()).convert("RGBA"))
        except (KeyError, ValueError, OSError) as e:
            raise BadInput(f"{cfg_path} [{name}]: unreadable template entry ({e})") from None
        out[name] = MaskTemplate(name, rgba.copy(), anchors)
    return out


def pick_variant(templates: dict[str, MaskTemplate], base: str, landmarks: np.ndarray) -> MaskTemplate:
    side = yaw_side(landmarks)
    return templates.get(f"{base}_{side}" if side else base, templates[base])


# ---------------------------------------------------------------- procedural masks

TEMPLATE_W, TEMPLATE_H = 400, 300
TEMPLATE_ANCHORS = np.array([[15, 95], [200, 10], [385, 95], [45, 225], [200, 292], [355, 225]], dtype=np.float32)

SURGICAL_COLOURS = [(170, 205, 230), (235, 238, 240), (160, 210, 190), (235, 190, 205), (40, 42, 48)]
CLOTH_COLOURS = [(30, 45, 90), (120, 30, 40), (60, 60, 60), (200, 170, 120), (40, 90, 60), (230, 230, 220)]


def _outline(anchors: np.ndarray, n: int = 24) -> list[tuple[float, float]]:
    """A smooth closed outline through a, b, c, f, e, d (Catmull-Rom)."""
    pts = anchors[[0, 1, 2, 5, 4, 3]]
    out = []
    for i in range(len(pts)):
        p0, p1, p2, p3 = pts[i - 1], pts[i], pts[(i + 1) % 6], pts[(i + 2) % 6]
        for t in np.linspace(0, 1, n, endpoint=False):
            t2, t3 = t * t, t * t * t
            q = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)
            out.append((float(q[0]), float(q[1])))
    return out


def _shade(c, f):
    return tuple(int(np.clip(v * f, 0, 255)) for v in c)


def procedural_mask(kind: str, rng: np.random.Generator) -> MaskTemplate:
    """Draw a mask: 'surgical' (pleats, several colours), 'kn95' (cup with a seam) or 'cloth' (patterned)."""
    img = Image.new("RGBA", (TEMPLATE_W, TEMPLATE_H), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    a = TEMPLATE_ANCHORS
    outline = _outline(a)
    if kind == "surgical":
        ci = int(rng.integers(len(SURGICAL_COLOURS)))
        col = SURGICAL_COLOURS[ci]
        d.polygon(outline, fill=col + (255,))
        for y in (0.33, 0.5, 0.67):  # pleats
            yy = TEMPLATE_H * y
            d.line([(40, yy - 6), (200, yy + 4), (360, yy - 6)], fill=_shade(col, 0.78) + (255,), width=5)
        d.line(outline + [outline[0]], fill=_shade(col, 0.85) + (255,), width=6)
    elif kind == "kn95":
        ci = int(rng.integers(3))
        col = [(240, 240, 238), (35, 35, 40), (220, 205, 180)][ci]
        d.polygon(outline, fill=col + (255,))
        d.line([tuple(a[1]), (200, 150), tuple(a[4])], fill=_shade(col, 0.7) + (255,), width=4)
        d.line(outline + [outline[0]], fill=_shade(col, 0.75) + (255,), width=8)
        d.ellipse((60, 110, 110, 160), outline=_shade(col, 0.8) + (255,), width=3)
    elif kind == "cloth":
        ci = int(rng.integers(len(CLOTH_COLOURS)))
        col = CLOTH_COLOURS[ci]
        d.polygon(outline, fill=col + (255,))
        other = _shade(col, 1.6) if sum(col) < 300 else _shade(col, 0.6)
        pattern = int(rng.integers(3))
        ci = ci * 3 + pattern
        if pattern == 0:
            for x in range(0, TEMPLATE_W, 30):
                for y in range(0, TEMPLATE_H, 30):
                    d.ellipse((x + 8, y + 8, x + 18, y + 18), fill=other + (255,))
        elif pattern == 1:
            for x in range(-TEMPLATE_H, TEMPLATE_W, 28):
                d.line([(x, 0), (x + TEMPLATE_H, TEMPLATE_H)], fill=other + (255,), width=8)
        else:
            for y in range(0, TEMPLATE_H, 36):
                d.rectangle((0, y, TEMPLATE_W, y + 14), fill=other + (255,))
        # keep the pattern inside the outline
        shape = Image.new("L", img.size, 0)
        ImageDraw.Draw(shape).polygon(outline, fill=255)
        img.putalpha(shape)
    else:
        raise ValueError(f"unknown procedural mask {kind!r}; use surgical, kn95 or cloth")
    # the name tells two drawn masks apart: kind and colour (and pattern for cloth)
    return MaskTemplate(f"{kind}-{ci}", np.asarray(img).copy(), TEMPLATE_ANCHORS.copy())


PROCEDURAL_KINDS = ("surgical", "kn95", "cloth")
