"""One outside face -> one pseudo-person in the competition layout: normal, mask1..5, incorrect_mask.

Outside faces are usually tight crops; competition photos are 384x512 head-and-shoulders portraits. The photo is
framed like a portrait first (`external.framing`):

- blur (the default): the crop, scaled so the face has a competition face's size and place, sharp inside an
  enlarged, blurred copy of itself. A domain probe tells these photos from competition ones easily (AUC 0.98 on
  the demo), yet it gives the best out-of-fold and eval F1 on the demo data: the blurred copy keeps the hair
  around the head (grey hair is the age cue) that a tight crop cuts off.
- portrait: the head (an ellipse around the face, feathered by a few pixels) on a backdrop with a neck and
  shoulders drawn below it. Face scale and position are drawn from the competition photos' own faces, and the
  backdrop is the top strip of a competition photo (wall or ceiling, above every head) stretched to the full
  height (external_data.geometry). A weaker tell (probe AUC 0.95 on the demo), but lower F1 there.

The README's external-data section has the figures.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces.masks import PROCEDURAL_KINDS, MaskTemplate, pick_variant, place_mask, procedural_mask

W, H = 384, 512
# (nose x, nose y, jaw-to-jaw width) of a competition face in pixels, used when no competition face was measured
DEFAULT_GEOMETRY = np.array([[W / 2, 250.0, 0.45 * W]])
SKIP_TEMPLATES = ("gas",)  # a gas mask is not a face mask anyone wears to the shops


def _face_transform(lm: np.ndarray, target) -> np.ndarray:
    """The similarity (scale + shift) putting the nose at (target x, y) and the jaw at the target width."""
    tx, ty, tw = target
    face_w = float(np.linalg.norm(lm[16] - lm[0]))
    centre = lm[27:36].mean(axis=0)
    s = tw / max(face_w, 1.0)
    return np.array([[s, 0, tx - s * centre[0]], [0, s, ty - s * centre[1]]])


def frame_blurred(img: np.ndarray, lm: np.ndarray, rng: np.random.Generator, target,
                  walls=None) -> tuple[np.ndarray, np.ndarray]:
    M = _face_transform(lm, target)
    s = M[0, 0]
    fg = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    valid = cv2.warpAffine(np.full(img.shape[:2], 255, np.uint8), M, (W, H))
    edge = max(3, int(0.06 * s * min(img.shape[:2])))
    valid = cv2.erode(valid, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8))
    valid = cv2.GaussianBlur(valid, (0, 0), edge).astype(np.float32)[..., None] / 255
    bg = cv2.GaussianBlur(cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR), (0, 0), 20)
    out = (fg * valid + bg * (1 - valid)).astype(np.uint8)
    return out, (lm @ M[:, :2].T + M[:, 2]).astype(np.float32)


def backdrop(rng: np.random.Generator, walls: np.ndarray | None = None) -> np.ndarray:
    """A competition photo's top strip stretched to the whole height, or with none measured a plain indoor wall: a pale colour, a vertical light gradient, soft uneven shading, sometimes a door edge."""
    if walls is not None and len(walls):
        wall = walls[rng.integers(len(walls))]
        wall = wall[:, ::-1] if rng.random() < 0.5 else wall
        return cv2.resize(wall, (W, H), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 70), rng.integers(130, 250)]]])
    base = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    grad = np.linspace(rng.uniform(0.85, 1.1), rng.uniform(0.75, 1.05), H, dtype=np.float32)[:, None, None]
    shade = cv2.resize(rng.normal(1, 0.06, (3, 4)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    out = np.broadcast_to(base, (H, W, 3)) * grad * shade[..., None]
    if rng.random() < 0.3:  # a door frame or a shelf edge beside the person
        x = int(rng.choice([rng.integers(0, W // 5), rng.integers(4 * W // 5, W)]))
        side = slice(0, x) if x < W // 2 else slice(x, W)
        out[:, side] *= rng.uniform(0.7, 1.2, 3).astype(np.float32)
    return np.clip(out, 0, 255)


def frame_portrait(img: np.ndarray, lm: np.ndarray, rng: np.random.Generator, target,
                   walls: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    M = _face_transform(lm, target)
    fg = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    flm = (lm @ M[:, :2].T + M[:, 2]).astype(np.float32)
    fw = float(np.linalg.norm(flm[16] - flm[0]))
    chin_y, brow_y = float(flm[8, 1]), float(flm[17:27, 1].min())
    mid_x = float(flm[[0, 16, 27, 8], 0].mean())
    # Skin for the neck from the cheeks (between the jaw and the nose), a shade darker as a neck in shadow is.
    cheeks = np.concatenate([(flm[2] + flm[31]) / 2, (flm[14] + flm[35]) / 2]).reshape(2, 2).round().astype(int)
    cheeks = np.clip(cheeks, 0, [W - 1, H - 1])
    skin = fg[cheeks[:, 1], cheeks[:, 0]].mean(axis=0) * 0.85

    canvas = backdrop(rng, walls)
    clothes = tuple(float(v) for v in rng.integers(20, 235, 3))
    top = chin_y + fw * rng.uniform(0.3, 0.45)
    half = fw * rng.uniform(1.05, 1.3)
    # neck, then shoulders over its lower end (an upper half-ellipse and the body below it)
    cv2.rectangle(canvas, (round(mid_x - 0.27 * fw), round(chin_y - 0.3 * fw)), (round(mid_x + 0.27 * fw), H - 1),
                  tuple(float(v) for v in skin), -1)
    shoulder_y = round(top + fw)
    cv2.ellipse(canvas, (round(mid_x), shoulder_y), (round(half), round(fw)), 0, 180, 360, clothes, -1, cv2.LINE_AA)
    cv2.rectangle(canvas, (round(mid_x - half), shoulder_y), (round(mid_x + half), H - 1), clothes, -1)

    # The head: an ellipse from above the brows (forehead and hair) to the chin, cut out of the warped photo
    # where the photo reaches, with a feathered edge of a few pixels (not a wide blur band).
    head = np.zeros((H, W), np.uint8)
    centre = (round(mid_x), round((brow_y - 0.55 * fw + chin_y + 0.05 * fw) / 2))
    axes = (round(0.6 * fw), round((chin_y + 0.05 * fw - brow_y + 0.55 * fw) / 2))
    cv2.ellipse(head, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    valid = cv2.warpAffine(np.full(img.shape[:2], 255, np.uint8), M, (W, H))
    alpha = cv2.erode(np.minimum(head, valid), np.ones((3, 3), np.uint8))
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.02 * fw)).astype(np.float32)[..., None] / 255
    out = fg * alpha + canvas * (1 - alpha)
    out += rng.normal(0, 2.5, out.shape).astype(np.float32)  # one sensor's noise over face and backdrop alike
    return np.clip(out, 0, 255).astype(np.uint8), flm


FRAMINGS = {"portrait": frame_portrait, "blur": frame_blurred}


def draw_geometry(geometry: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One competition face's (nose x, nose y, jaw width), with a little jitter so no two persons share it."""
    g = geometry[rng.integers(len(geometry))]
    return g * np.array([1 + rng.normal(0, 0.01), 1 + rng.normal(0, 0.01), 1 + rng.normal(0, 0.03)])


def mask_pool(templates: dict[str, MaskTemplate] | None) -> list[str]:
    """Names of the masks a person can wear: the procedural kinds plus each template base (no left/right)."""
    bases = [n for n in (templates or {}) if not n.endswith(("_left", "_right")) and n not in SKIP_TEMPLATES]
    return [f"procedural:{k}" for k in PROCEDURAL_KINDS] + [f"template:{b}" for b in sorted(bases)]


def get_mask(name: str, templates, lm, rng) -> MaskTemplate:
    kind, base = name.split(":", 1)
    if kind == "procedural":
        return procedural_mask(base, rng)
    return pick_variant(templates, base, lm)


def make_person(img: np.ndarray, lm: np.ndarray, templates, rng: np.random.Generator, framing: str = "portrait",
                geometry: np.ndarray = DEFAULT_GEOMETRY, walls: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The seven photos; mask1..5 wear five different masks, incorrect_mask is under the nose or on the chin."""
    framed, flm = FRAMINGS[framing](img, lm, rng, draw_geometry(geometry, rng), walls)
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
