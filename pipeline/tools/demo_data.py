"""A generated data set in the competition layout, for the demo and the tests.

Procedural 384x512 portraits in which the label is visible and learnable: long hair for women, short (or none)
for men; hair greys and wrinkles deepen with the age band; masks are drawn by pipeline.faces.masks from the portrait's
own 68 landmarks, worn, under the nose or on the chin. Pose, scale, lighting, clothes and background vary.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from PIL import Image, ImageDraw

from pipeline.faces.masks import PROCEDURAL_KINDS, place_mask, procedural_mask
from pipeline.labels import PHOTOS
from pipeline.tools.label_noise import INJECTED_ERRORS, choose_errors, errors_table

W, H = 384, 512
# Real class balance: about 47% under 30, 46% 30-59, 7% 60+; 61% women.
BAND_P = (0.47, 0.46, 0.07)
BAND_AGES = ((18, 29), (30, 59), (60, 85))
RACES = ("Asian", "White", "Black", "Indian")
HAIR = [(25, 20, 18), (60, 40, 25), (110, 75, 40), (170, 130, 70), (90, 35, 20)]
GREY = (200, 200, 205)
SKIN = [(240, 205, 180), (225, 180, 150), (195, 145, 110), (150, 105, 75), (105, 70, 50)]


def sample_person(rng: np.random.Generator, index: int, band: int | None = None) -> dict:
    band = int(rng.choice(3, p=BAND_P)) if band is None else band
    lo, hi = BAND_AGES[band]
    gender = "female" if rng.random() < 0.61 else "male"
    return {
        "id": f"{index:06d}",
        "gender": gender,
        "race": RACES[rng.integers(len(RACES))],
        "age": int(rng.integers(lo, hi + 1)),
        "band": band,
        "skin": SKIN[rng.integers(len(SKIN))],
        "hair": HAIR[rng.integers(len(HAIR))],
        "grey": [0.0, rng.uniform(0.25, 0.45), rng.uniform(0.7, 1.0)][band],
        "bald": gender == "male" and band == 2 and rng.random() < 0.3,
        "clothes": tuple(int(v) for v in rng.integers(20, 235, 3)),
        "bg": (tuple(int(v) for v in rng.integers(60, 250, 3)), tuple(int(v) for v in rng.integers(30, 220, 3))),
        "hair_len": rng.uniform(0.9, 1.5),
        "seed": int(rng.integers(2**31)),
    }


def _mix(a, b, t):
    return tuple(int(x * (1 - t) + y * t) for x, y in zip(a, b))


def _ellipse_pts(cx, cy, rx, ry, a0, a1, n):
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def render_portrait(person: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One photo of a person: (RGB uint8 H x W x 3, 68 landmarks in pixels)."""
    s = rng.uniform(0.88, 1.12)
    cx, cy = W / 2 + rng.normal(0, 12), 225 + rng.normal(0, 10)
    rx, ry = 94 * s, 124 * s
    yaw = rng.normal(0, 0.08)  # shifts features sideways, as a turned head does
    grad = np.linspace(0, 1, H)[:, None, None]
    bg0, bg1 = np.array(person["bg"][0]), np.array(person["bg"][1])
    img = Image.fromarray(((1 - grad) * bg0 + grad * bg1).repeat(W, axis=1).astype(np.uint8))
    d = ImageDraw.Draw(img)
    hair = _mix(person["hair"], GREY, person["grey"])
    skin = person["skin"]

    # long hair behind the head and shoulders for women
    if person["gender"] == "female":
        L = person["hair_len"]
        d.ellipse((cx - rx * 1.25, cy - ry * 1.15, cx + rx * 1.25, cy + ry * (0.9 + 0.6 * L)), fill=hair)
    # shoulders and neck
    d.ellipse((cx - 190 * s, cy + ry * 1.15, cx + 190 * s, cy + ry * 1.15 + 320 * s), fill=person["clothes"])
    d.rectangle((cx - rx * 0.42, cy + ry * 0.6, cx + rx * 0.42, cy + ry * 1.35), fill=_mix(skin, (0, 0, 0), 0.12))
    if person["gender"] == "female":
        d.rectangle((cx - rx * 1.2, cy, cx - rx * 0.75, cy + ry * (0.6 + 0.6 * person["hair_len"])), fill=hair)
        d.rectangle((cx + rx * 0.75, cy, cx + rx * 1.2, cy + ry * (0.6 + 0.6 * person["hair_len"])), fill=hair)
    # face
    d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=skin)
    # hair on top
    if not person["bald"]:
        top = 0.25 if person["gender"] == "male" else 0.15
        d.chord((cx - rx * 1.05, cy - ry * 1.12, cx + rx * 1.05, cy + ry * 0.3), 180, 360, fill=hair)
        d.ellipse((cx - rx * 0.95, cy - ry * 0.75, cx + rx * 0.95, cy - ry * top), fill=skin)
    fx = cx + yaw * rx  # feature centre line

    # landmarks (dlib order)
    lm = np.zeros((68, 2), dtype=np.float32)
    t = np.radians(np.linspace(0, 180, 17))  # lower half of the face outline: image-left ear, chin, right ear
    lm[0:17] = np.stack([cx - rx * 0.98 * np.cos(t), cy + ry * 0.98 * np.sin(t)], axis=1)
    lm[8, 0] = fx
    eye_y = cy - ry * 0.12
    for i, side in enumerate((-1, 1)):
        ex = fx + side * rx * 0.38
        lm[17 + 5 * i : 22 + 5 * i] = _ellipse_pts(ex, eye_y - ry * 0.12, rx * 0.22, ry * 0.06, 200, 340, 5)
        lm[36 + 6 * i : 42 + 6 * i] = _ellipse_pts(ex, eye_y, rx * 0.14, ry * 0.05, 180, 540, 7)[:6]
    lm[27:31] = np.stack([np.full(4, fx + yaw * 8), np.linspace(eye_y, cy + ry * 0.22, 4)], axis=1)
    lm[31:36] = np.stack([fx + np.linspace(-rx * 0.16, rx * 0.16, 5), np.full(5, cy + ry * 0.3)], axis=1)
    lm[31:36, 1] += np.array([0, 0.02, 0.03, 0.02, 0]) * ry
    my = cy + ry * 0.55
    lm[48:60] = _ellipse_pts(fx, my, rx * 0.3, ry * 0.09, 180, 540, 13)[:12]
    lm[60:68] = _ellipse_pts(fx, my, rx * 0.22, ry * 0.03, 180, 540, 9)[:8]
    lm[[51, 57], 1] = [my - ry * 0.09, my + ry * 0.09]

    # features
    brow = _mix(hair, (0, 0, 0), 0.3)
    for i in range(2):
        d.line([tuple(p) for p in lm[17 + 5 * i : 22 + 5 * i]], fill=brow, width=max(2, int(4 * s)))
        e = lm[36 + 6 * i : 42 + 6 * i]
        d.ellipse((e[:, 0].min(), e[:, 1].min() - 3, e[:, 0].max(), e[:, 1].max() + 3), fill=(245, 245, 245))
        c = e.mean(axis=0)
        d.ellipse((c[0] - 5 * s, c[1] - 5 * s, c[0] + 5 * s, c[1] + 5 * s), fill=(50, 35, 25))
    d.line([tuple(p) for p in lm[27:31]] + [tuple(lm[33])], fill=_mix(skin, (0, 0, 0), 0.3), width=2)
    d.line([tuple(p) for p in lm[31:36]], fill=_mix(skin, (0, 0, 0), 0.35), width=3)
    lips = (175, 60, 70) if person["gender"] == "female" and person["seed"] % 3 else _mix(skin, (120, 40, 40), 0.5)
    d.polygon([tuple(p) for p in lm[48:60]], fill=lips)
    d.line([tuple(p) for p in lm[60:68]], fill=(90, 30, 35), width=2)
    # wrinkles deepen with age
    n_lines = [0, 2 if person["age"] > 45 else 1, 3][person["band"]]
    wr = _mix(skin, (0, 0, 0), 0.35 + 0.1 * person["band"])
    for k in range(n_lines):
        y = cy - ry * (0.45 + 0.1 * k)
        d.arc((fx - rx * 0.5, y - 10, fx + rx * 0.5, y + 10), 200, 340, fill=wr, width=2)
    if person["band"] == 2:
        for side in (-1, 1):
            d.line([(fx + side * rx * 0.25, cy + ry * 0.3), (fx + side * rx * 0.36, cy + ry * 0.6)], fill=wr, width=2)
            d.line([(fx + side * rx * 0.55, eye_y), (fx + side * rx * 0.7, eye_y - 6)], fill=wr, width=2)
            d.line([(fx + side * rx * 0.55, eye_y + 5), (fx + side * rx * 0.7, eye_y + 9)], fill=wr, width=2)

    arr = np.asarray(img).copy()
    # small head roll: rotate photo and landmarks together
    angle = rng.normal(0, 4)
    M = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    arr = cv2.warpAffine(arr, M, (W, H), borderMode=cv2.BORDER_REFLECT)
    lm = (np.c_[lm, np.ones(68)] @ M.T).astype(np.float32)
    return arr, lm


def _finish(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting and sensor noise, after the mask so the mask is lit like the face."""
    gain = (rng.uniform(0.7, 1.25) * rng.uniform(0.9, 1.1, 3)).astype(np.float32)
    noise = rng.integers(-6, 7, arr.shape, dtype=np.int8)
    return np.clip(arr * gain + noise, 0, 255).astype(np.uint8)


def render_person(person: dict, photos=PHOTOS) -> dict[str, np.ndarray]:
    """Competition photos of one person (all seven by default); mask1..5 each wear a different mask."""
    rng = np.random.default_rng(person["seed"])
    out = {}
    for photo in photos:
        arr, lm = render_portrait(person, rng)
        if photo.startswith("mask"):
            i = int(photo[-1]) - 1
            arr, _ = place_mask(arr, lm, procedural_mask(PROCEDURAL_KINDS[i % 3], rng), "worn")
        elif photo == "incorrect_mask":
            mode = "under_nose" if rng.random() < 0.6 else "chin"
            arr, _ = place_mask(arr, lm, procedural_mask(PROCEDURAL_KINDS[rng.integers(3)], rng), mode)
        out[photo] = _finish(arr, rng)
    return out


def _save(arr: np.ndarray, path: Path) -> None:
    # Fast PNG compression: the demo needs mixed formats, not small files.
    Image.fromarray(arr).save(path, quality=90, compress_level=1)


def _write_person(person: dict, folder: Path, exts: list[str], junk: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    photos = render_person(person)
    if person.get("swapped"):  # an injected label error: each photo saved under the other's name
        photos["incorrect_mask"], photos["normal"] = photos["normal"], photos["incorrect_mask"]
    for (photo, arr), ext in zip(photos.items(), exts):
        _save(arr, folder / f"{photo}{ext}")
        if junk and photo == "mask1":
            (folder / f"._{photo}{ext}").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")


def _write_eval(person: dict, photo: str, path: Path) -> None:
    _save(render_person(person, [photo])[photo], path)


POOL_SIDE = 200  # outside face sets come as tight square crops (UTKFace: 200x200, the face filling most of it)


def _write_pool_face(person: dict, path: Path) -> list:
    rng = np.random.default_rng(person["seed"])
    arr, lm = render_portrait(person, rng)
    arr = _finish(arr, rng)
    jaw = float(np.linalg.norm(lm[16] - lm[0]))
    cx, cy = lm[27:36].mean(axis=0)
    side = 1.8 * jaw
    s = POOL_SIDE / side
    M = np.array([[s, 0, -s * (cx - side / 2)], [0, s, -s * (cy - 0.45 * side)]])
    crop = cv2.warpAffine(arr, M, (POOL_SIDE, POOL_SIDE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    _save(crop, path)
    return (lm @ M[:, :2].T + M[:, 2]).round(2).tolist()


def make_elder_pool(out: Path, faces: int, rng: np.random.Generator, n_jobs: int = 2) -> None:
    """Unmasked 60+ faces, cropped tight like UTKFace's, with their landmarks: the demo's stand-in for an outside
    face set.

    Written as a plain table (faces.csv: file, age, gender, race) with landmarks.json beside it, so the
    external stage reads it with its csv importer and file landmarks.
    """
    out.mkdir(parents=True, exist_ok=True)
    people = [sample_person(rng, 800000 + i, band=2) for i in range(faces)]
    names = [f"elder_{i:04d}.jpg" for i in range(faces)]
    lms = Parallel(n_jobs=n_jobs, batch_size=8)(delayed(_write_pool_face)(p, out / n) for p, n in zip(people, names))
    pd.DataFrame({"file": names, "age": [p["age"] for p in people], "gender": [p["gender"] for p in people],
                  "race": [p["race"] for p in people]}).to_csv(out / "faces.csv", index=False)
    (out / "landmarks.json").write_text(json.dumps(dict(zip(names, lms))))


def make_demo_data(out: str | Path, persons: int = 240, eval_images: int = 420, seed: int = 0, n_jobs: int = 2,
                   elder_pool: int = 40, label_noise: int = 0) -> Path:
    """Write the competition layout under `out` (plus an elder_pool/ of outside faces); returns the folder.

    label_noise: that many known label errors of each kind (pipeline.tools.label_noise), listed in
    train/injected_errors.csv."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    # Ids from 100001 up: they never meet the real ids that configs/label_fixes.csv names.
    people = [sample_person(rng, 100001 + i) for i in range(persons)]
    # Every class must exist even in a tiny set: make sure each gender x age band has at least 2 people.
    for k, (g, b) in enumerate([(g, b) for g in ("male", "female") for b in range(3)]):
        have = sum(p["gender"] == g and p["band"] == b for p in people)
        for j in range(max(0, 2 - have)):
            i = (k * 2 + j) * 7 % persons
            people[i] = {**sample_person(rng, 100001 + i, band=b), "gender": g, "bald": False}
    errors = choose_errors(people, label_noise, seed)
    rows, jobs = [], []
    for p in people:
        # the folder is named from the labels, as the competition's are
        folder = f"{p['id']}_{p['label_gender']}_{p['race']}_{p['label_age']}"
        exts = [([".jpg"] * 8 + [".png", ".jpeg"])[i] for i in rng.integers(0, 10, len(PHOTOS))]
        rows.append({"id": p["id"], "gender": p["label_gender"], "race": p["race"], "age": p["label_age"],
                     "path": folder})
        jobs.append(delayed(_write_person)(p, out / "train" / "images" / folder, exts, rng.random() < 0.1))
    (out / "train").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "train" / "train.csv", index=False)
    if errors:
        table = errors_table(people, errors, [r["path"] for r in rows])
        table.to_csv(out / "train" / INJECTED_ERRORS, index=False)

    truth = []
    (out / "eval" / "images").mkdir(parents=True, exist_ok=True)
    for i in range(eval_images):
        p = sample_person(rng, 900000 + i)
        photo = PHOTOS[rng.integers(len(PHOTOS))]
        image_id = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest() + ".jpg"
        mask = 0 if photo.startswith("mask") else (1 if photo == "incorrect_mask" else 2)
        truth.append({"ImageID": image_id, "ans": mask * 6 + (p["gender"] == "female") * 3 + p["band"]})
        jobs.append(delayed(_write_eval)(p, photo, out / "eval" / "images" / image_id))
    Parallel(n_jobs=n_jobs, batch_size=8)(jobs)
    truth = pd.DataFrame(truth)
    truth.assign(ans=0).to_csv(out / "eval" / "info.csv", index=False)
    truth.to_csv(out / "eval" / "labels.csv", index=False)
    if elder_pool:
        make_elder_pool(out / "elder_pool", elder_pool, rng, n_jobs)
    return out
