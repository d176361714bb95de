"""A domain probe: how easily can a small classifier tell external photos from competition photos?

For each mask state, photos of that state from both sources (competition persons of the external persons' age
bands only) are described by coarse per-region statistics (colour,
contrast, sharpness on an 8x8 grid, the way a network's early layers see framing and blur) and a gradient-boosted
classifier is cross-validated with persons kept whole. Its out-of-fold ROC AUC is the figure: 0.5 means the two
sources cannot be told apart from these statistics; near 1.0 means a network can learn "external" (and so
"60+") from the photo's look instead of from the face. The frame figure uses only the grid's outer ring: what
lies around the face, where a framing tell lives. Photos are read as training reads them (same cache size and
crop), so with `data.crop: face` the probe measures the cropped photos.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.config import Config
from pipeline.data.cache import decode
from pipeline.data.extra import source_rows
from pipeline.faces.crop import crop_function
from pipeline.labels import MASKS
from pipeline.tables.fields import image_file
from pipeline.tables.train import read_train

GRID = 8
SIZE = (96, 128)  # width, height the statistics are taken at
RING = np.array([r in (0, GRID - 1) or c in (0, GRID - 1) for r in range(GRID) for c in range(GRID)])


def region_statistics(img: np.ndarray) -> np.ndarray:
    """(GRID*GRID, 5): mean R, G, B, grey standard deviation and log sharpness (mean |Laplacian|) per cell."""
    img = cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    grey = img.mean(axis=2)
    sharp = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
    h, w = SIZE[1] // GRID, SIZE[0] // GRID
    cells = lambda a: a[: h * GRID, : w * GRID].reshape(GRID, h, GRID, w, *a.shape[2:]).swapaxes(1, 2)  # noqa: E731
    rgb = cells(img).reshape(GRID * GRID, h * w, 3).mean(axis=1)
    std = cells(grey).reshape(GRID * GRID, -1).std(axis=1)
    lap = np.log1p(cells(sharp).reshape(GRID * GRID, -1).mean(axis=1))
    return np.column_stack([rgb / 255, std / 64, lap])


def _describe(files: list[str], size, crop_fn) -> np.ndarray:
    return np.stack([region_statistics(decode(f, size, crop_fn)[0]) for f in files])


def _sample_persons(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    persons = df["person_id"].drop_duplicates()
    keep = persons.sample(min(n, len(persons)), random_state=seed)
    return df[df["person_id"].isin(keep)]


def probe_auc(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0, splits: int = 5) -> float:
    """Out-of-fold ROC AUC of telling y=1 from y=0, with each group (person) wholly in one fold."""
    splits = min(splits, int(min(np.bincount(y))))
    if splits < 2:
        return float("nan")
    prob = np.zeros(len(y))
    cv = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    for tr, va in cv.split(x, y, groups):
        clf = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, min_samples_leaf=5, random_state=seed)
        prob[va] = clf.fit(x[tr], y[tr]).predict_proba(x[va])[:, 1]
    return float(roc_auc_score(y, prob))


def run_probe(cfg: Config, persons: int = 300, n_jobs: int = 2, log=print) -> dict:
    """The probe's AUC per mask state (whole photo and frame only), external vs competition photos."""
    competition, _ = read_train(cfg.data_dir, cfg.data)
    competition = competition.assign(path=[str(image_file(cfg.data_dir, p)) for p in competition["path"]])
    external = source_rows(cfg, "external")
    # Against competition persons of the external persons' age bands only: age itself is a real difference
    # between the sources (every external person is old), not a tell of how the photos were made.
    competition = competition[competition["age_band"].isin(external["age_band"].unique())]
    rows = pd.concat([_sample_persons(competition, persons, cfg.seed).assign(external=0),
                      _sample_persons(external, persons, cfg.seed).assign(external=1)], ignore_index=True)
    files = rows["path"].tolist()
    chunks = [files[i : i + 128] for i in range(0, len(files), 128)]
    crop = crop_function(cfg.data, files, cfg.cache_dir, cfg.run_dir, log)
    stats = np.concatenate(Parallel(n_jobs=n_jobs)(delayed(_describe)(c, tuple(cfg.data.cache_size), crop)
                                                   for c in chunks))
    result = {"crop": cfg.data.crop, "framing": cfg.external.framing}
    for mask in MASKS:
        pick = (rows["mask"] == mask).to_numpy()
        y, groups = rows["external"].to_numpy()[pick], rows["person_id"].to_numpy()[pick]
        result[mask] = {
            "auc": round(probe_auc(stats[pick].reshape(pick.sum(), -1), y, groups, cfg.seed), 3),
            "frame_auc": round(probe_auc(stats[pick][:, RING].reshape(pick.sum(), -1), y, groups, cfg.seed), 3),
            "external_photos": int(y.sum()), "competition_photos": int((1 - y).sum())}
    result["auc"] = round(float(np.mean([result[m]["auc"] for m in MASKS])), 3)
    result["frame_auc"] = round(float(np.mean([result[m]["frame_auc"] for m in MASKS])), 3)
    log("domain probe (ROC AUC of telling external from competition photos; 0.5: indistinguishable): "
        + " · ".join(f"{m} {result[m]['auc']:.3f}" for m in MASKS)
        + f" · mean {result['auc']:.3f}; frame only {result['frame_auc']:.3f}")
    return result
