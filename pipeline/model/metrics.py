"""Macro F1 over the classes, and per task (mask, gender, age) by decoding the classes."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from pipeline.contract import NUM_CLASSES, decode_label


def macro_f1(y_true, y_pred, n: int = NUM_CLASSES) -> float:
    return float(f1_score(y_true, y_pred, labels=list(range(n)), average="macro", zero_division=0))


def scores(y_true, y_pred) -> dict:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = {"f1": macro_f1(y_true, y_pred), "acc": float((y_true == y_pred).mean()) if len(y_true) else 0.0}
    for name, t, p in zip(("mask", "gender", "age"), decode_label(y_true), decode_label(y_pred)):
        out[f"f1_{name}"] = macro_f1(t, p, n=2 if name == "gender" else 3)
    return out
