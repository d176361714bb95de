"""`maskfold ensemble`: reads models/*/fold*/{oof,test}.npz and folds.csv, writes the blend, submission and report.

Never loads a model: what it needs from training is on disk as predictions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble import blend
from ensemble.submission import validate_submission
from pipeline.config import Config
from pipeline.contract import NUM_CLASSES, DataError, Problem, read_eval
from pipeline.io import atomic_save_npz, atomic_write_csv, atomic_write_text, remove_stale_temporaries
from pipeline.layout import ensemble_dir, folds_csv, pair_dir, submission_csv, unfinished_reason, weights_json
from pipeline.model.metrics import scores


@dataclass
class Predictions:
    image_ids: np.ndarray  # OOF ids, in folds.csv order of the competition photos
    labels: np.ndarray
    persons: np.ndarray
    oof: dict[str, np.ndarray]  # backbone -> (N, 18) probabilities
    per_fold: list[dict]  # backbone, fold, f1, acc on its own fold
    test: dict[str, np.ndarray] | None  # backbone -> (M, 18) probabilities averaged over folds
    test_ids: np.ndarray | None


def load_predictions(cfg: Config) -> Predictions:
    run = Path(cfg.run_dir)
    folds_path = folds_csv(run)
    if not folds_path.is_file():
        raise DataError([Problem(str(folds_path), "folds.csv not found")],
                        hint="run `maskfold folds` and `maskfold train-all` with this config first")
    folds = pd.read_csv(folds_path, dtype={"person_id": str})
    folds = folds[folds["source"] != "external"]
    ids = folds["image_id"].to_numpy().astype(str)
    index = pd.Series(np.arange(len(ids)), index=ids)
    evals, _ = read_eval(cfg.data_dir)
    missing, oof, test, per_fold = [], {}, {}, []
    for b in cfg.backbone_names():
        probs = np.full((len(ids), NUM_CLASSES), np.nan)
        test_sum, test_n, test_ids = None, 0, None
        for k in range(cfg.folds.n_splits):
            d = pair_dir(run, b, k)
            why = unfinished_reason(cfg, b, k)
            if why is not None:
                missing.append(f"{b} fold {k} ({why})")
                continue
            z = np.load(d / "oof.npz")
            rows = index.reindex(z["image_id"].astype(str))
            if rows.isna().any():
                missing.append(f"{b} fold {k}: oof.npz names photos not in folds.csv; retrain this pair")
                continue
            rows = rows.to_numpy().astype(int)
            if not np.isnan(probs[rows]).all():
                missing.append(f"{b} fold {k}: oof.npz repeats photos already predicted by another fold")
            probs[rows] = blend.softmax(z["logits"])
            s = scores(z["labels"], z["logits"].argmax(1))
            per_fold.append({"backbone": b, "fold": k, "f1": s["f1"], "acc": s["acc"], "photos": len(rows)})
            if evals is not None:
                t = d / "test.npz"
                if not t.is_file():
                    missing.append(f"{b} fold {k} (no {t}: test predictions)")
                    continue
                zt = np.load(t)
                if test_ids is None:
                    test_ids = zt["image_id"].astype(str)
                elif not np.array_equal(test_ids, zt["image_id"].astype(str)):
                    missing.append(f"{b} fold {k}: test.npz photos differ from the other folds'; retrain this pair")
                    continue
                p = blend.softmax(zt["logits"])
                test_sum = p if test_sum is None else test_sum + p
                test_n += 1
        uncovered = np.isnan(probs).any(1)
        if uncovered.any() and not any(m.startswith(f"{b} ") for m in missing):
            missing.append(f"{b}: {uncovered.sum()} training photos have no OOF prediction (e.g. {ids[uncovered][0]})")
        oof[b] = probs
        if test_n:
            test[b] = test_sum / test_n
            if test_ids is not None and evals is not None and list(test_ids) != list(evals["image_id"]):
                missing.append(f"{b}: test.npz photos are not eval/info.csv's; retrain or rerun folds")
    if missing:
        raise DataError([Problem(str(run / "models"), "missing or inconsistent predictions: " + m) for m in missing],
                        hint="run `maskfold train-all` with this config: it trains or re-predicts exactly these pairs")
    return Predictions(ids, folds["label"].to_numpy(), folds["person_id"].to_numpy().astype(str), oof, per_fold,
                       test if evals is not None else None,
                       evals["image_id"].to_numpy().astype(str) if evals is not None else None)


def run_ensemble(cfg: Config, log=print) -> dict:
    e = cfg.ensemble
    for folder in (cfg.run_dir, ensemble_dir(cfg.run_dir)):
        remove_stale_temporaries(folder)  # a killed earlier ensemble's half-written files
    preds = load_predictions(cfg)
    names = list(preds.oof)
    oof = [preds.oof[b] for b in names]
    y = preds.labels
    out = ensemble_dir(cfg.run_dir)

    plain = blend.combine(oof, e.method)
    rows = {f"backbone {b}": scores(y, p.argmax(1)) for b, p in zip(names, oof)}
    rows[f"ensemble ({e.method} vote, equal weights)"] = scores(y, plain.argmax(1))
    # Honest F1 of each variant: a plain vote fits nothing, so its OOF score is already honest; fitted variants
    # are scored nested (fit on some persons, scored on the others).
    fits = {"equal weights": (np.ones(len(oof)) / len(oof), np.zeros(NUM_CLASSES))}
    honest = {"equal weights": rows[f"ensemble ({e.method} vote, equal weights)"]["f1"]}
    variants = []
    if e.method == "soft" and e.search_weights:
        variants.append(("weights", True, False))
    if e.method == "soft" and e.tune_offsets:
        variants.append(("weights + offsets" if e.search_weights else "offsets", e.search_weights, True))
    for label, fit_w, fit_off in variants:
        fits[label] = blend.fit(oof, y, e.method, fit_w, fit_off)
        w, off = fits[label]
        rows[f"ensemble + {label} (in-sample)"] = scores(y, blend.predict_with(blend.combine(oof, e.method, w), off))
        nested = blend.nested_predictions(oof, y, preds.persons, e.nested_splits, e.method, fit_w, fit_off,
                                          seed=cfg.seed)
        rows[f"ensemble + {label} (nested, {e.nested_splits} person splits)"] = scores(y, nested)
        honest[label] = rows[f"ensemble + {label} (nested, {e.nested_splits} person splits)"]["f1"]
    chosen = max(honest, key=honest.get) if e.choose_by_nested else list(fits)[-1]
    w, off = fits[chosen]
    weighted = blend.combine(oof, e.method, w)
    final_pred = blend.predict_with(weighted, off)
    log(f"used for the submission: {chosen} (honest OOF macro F1 {honest[chosen]:.4f}"
        f"{'; chosen by the nested figures' if e.choose_by_nested else ''})")

    atomic_save_npz(out / "oof.npz", image_id=preds.image_ids, probs=weighted.astype(np.float32), labels=y,
                    pred=final_pred)
    fitted = {"method": e.method, "backbones": names, "chosen": chosen, "honest_f1": honest,
              "weights": [float(v) for v in w], "offsets": [float(v) for v in off], "tta": cfg.tta,
              "n_splits": cfg.folds.n_splits}
    atomic_write_text(weights_json(cfg.run_dir), json.dumps(fitted, indent=1))

    submission = None
    test_pred = None
    if preds.test is not None:
        test_scores = blend.combine([preds.test[b] for b in names], e.method, w)
        test_pred = blend.predict_with(test_scores, off)
        submission = pd.DataFrame({"ImageID": preds.test_ids, "ans": test_pred.astype(int)})
        evals, _ = read_eval(cfg.data_dir)
        validate_submission(submission, evals["image_id"].tolist())
        atomic_write_csv(submission, submission_csv(cfg.run_dir))
    else:
        log("no eval/ folder: nothing to submit; OOF blend and report written")

    from ensemble.report import write_report

    headline = write_report(out, rows, preds.per_fold, y, final_pred, test_pred, preds.labels, chosen,
                            cfg.data.age_cuts)
    for line in headline:
        log(line)
    if submission is not None:
        log(f"submission: {submission_csv(cfg.run_dir)} ({len(submission)} rows, validated)")
        truth = Path(cfg.data_dir) / "eval" / "labels.csv"
        if truth.is_file():  # the generated demo set ships its truth so the demo can score itself
            t = pd.read_csv(truth).set_index("ImageID").loc[submission["ImageID"], "ans"].to_numpy()
            log(f"eval macro F1 against {truth}: {scores(t, submission['ans'].to_numpy())['f1']:.4f}")
    return {"rows": rows, "weights": fitted}
