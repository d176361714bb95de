"""`maskfold ensemble`: blends the members' OOF and test predictions (ensemble.members reads them), chooses the
blend with the best honest OOF figure, and writes the submission, weights.json, the report and test_probs.npz (the
blended eval probabilities that another run's pseudo stage reads). ensemble.test_from picks the models that
predict the eval set (the folds, the full-data refits, or both); the OOF figures are always the folds'.

Never loads a model: what it needs from training is on disk as predictions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble import blend
from ensemble.members import load_predictions, run_labels
from ensemble.submission import validate_submission
from pipeline.config import Config
from pipeline.contract import image_file, read_eval
from pipeline.data.pseudo import class_counts
from pipeline.io import atomic_save_npz, atomic_write_csv, atomic_write_text, remove_stale_temporaries
from pipeline.layout import (
    blended_probs_npz,
    ensemble_dir,
    folds_csv,
    pair_dir,
    read_refit_done,
    submission_csv,
    weights_json,
)
from pipeline.model.metrics import scores

KIND_LABELS = {"equal": "equal weights", "weights": "weights", "selection": "selection", "stacking": "stacking"}
TEST_MODELS = {"folds": "the fold models", "refit": "the full-data refits",
               "both": "the fold models and the full-data refits (their mean)"}


def blend_kinds(e) -> list[tuple[str, bool]]:
    """Every (blend, with offsets) the config asks for; a hard vote fits nothing."""
    if e.method == "hard":
        return [("equal", False)]
    kinds = ["equal"] + [k for k, on in (("weights", e.search_weights), ("selection", e.selection),
                                         ("stacking", e.stacking)) if on]
    return [(k, off) for k in kinds for off in ((False, True) if e.tune_offsets else (False,))]


def settings_used(cfg: Config, members) -> dict:
    """The config as a dict, with train.refit on where a member has a refit: `train-all --refit` turns it on for
    that command only, and the ensemble's own config need not say it."""
    used = cfg.to_dict()
    used["train"]["refit"] = cfg.train.refit or any(read_refit_done(m.run, m.backbone) for m in members)
    return used


def pseudo_added(members) -> dict[str, np.ndarray]:
    """Pseudo-labelled photos per class that each member's run trained on (runs without any left out)."""
    runs = list(dict.fromkeys(m.run for m in members))
    labels = run_labels(runs) if len(runs) > 1 else ["this run"]
    counts = {label: class_counts(folds_csv(r)) for label, r in zip(labels, runs)}
    return {label: c for label, c in counts.items() if c is not None}


def run_ensemble(cfg: Config, log=print) -> dict:
    e = cfg.ensemble
    for folder in (cfg.run_dir, ensemble_dir(cfg.run_dir)):
        remove_stale_temporaries(folder)  # a killed earlier ensemble's half-written files
    preds = load_predictions(cfg)
    names = list(preds.oof)
    oof = [preds.oof[b] for b in names]
    y = preds.labels
    out = ensemble_dir(cfg.run_dir)
    kw = {"steps": e.selection_steps, "c": e.stacking_c}
    persons = blend.person_parts(preds.persons, e.nested_splits, seed=cfg.seed)

    rows = {f"backbone {b}": scores(y, p.argmax(1)) for b, p in zip(names, oof)}
    # Honest F1 of each blend: a plain vote fits nothing, so its OOF score is already honest; fitted blends are
    # scored nested (fit on some persons, score on the others; stacking: on the other folds, as it would be used).
    fits, honest = {}, {}
    for kind, off in blend_kinds(e):
        label = KIND_LABELS[kind] + (" + offsets" if off else "")
        fits[label] = blend.fit_blend(kind, oof, y, off, e.method, **kw)
        in_sample = scores(y, blend.predict_with(blend.apply_blend(fits[label], oof, e.method), fits[label]["offsets"]))
        if kind == "equal" and not off:
            rows[f"ensemble ({e.method} vote, equal weights)"] = in_sample
            honest[label] = in_sample["f1"]
            continue
        rows[f"ensemble + {label} (in-sample)"] = in_sample
        part, how = (preds.folds, "per outer fold") if kind == "stacking" else (persons, f"{e.nested_splits} person splits")
        nested = scores(y, blend.nested_blend(kind, oof, y, part, off, e.method, **kw))
        rows[f"ensemble + {label} (nested, {how})"] = nested
        honest[label] = nested["f1"]
    for line in blend.take_notes():  # e.g. a stacker that did not converge: once, with what to change
        log(line)
    chosen = max(honest, key=honest.get) if e.choose_by_nested else list(fits)[-1]
    fitted = fits[chosen]
    weighted = blend.apply_blend(fitted, oof, e.method)
    final_pred = blend.predict_with(weighted, fitted["offsets"])
    log(f"used for the submission: {chosen} (honest OOF macro F1 {honest[chosen]:.4f}"
        f"{'; chosen by the nested figures' if e.choose_by_nested else ''})")

    atomic_save_npz(out / "oof.npz", image_id=preds.image_ids, probs=weighted.astype(np.float32), labels=y,
                    pred=final_pred)
    stacker = fitted["stacker"]
    saved = {"method": e.method, "backbones": names, "chosen": chosen, "honest_f1": honest,
             # a member of this run is found beside weights.json ("."), another run's by its absolute path
             "members": [{"name": m.name, "run": "." if m.run == cfg.run_dir else str(Path(m.run).resolve()),
                          "backbone": m.backbone, "tta": m.cfg.tta, "n_splits": m.cfg.folds.n_splits}
                         for m in preds.members],
             "weights": [float(v) for v in fitted["weights"]], "offsets": [float(v) for v in fitted["offsets"]],
             "stacker": None if stacker is None else {k: np.asarray(v).tolist() for k, v in stacker.items()},
             "tta": cfg.tta, "n_splits": cfg.folds.n_splits, "test_from": e.test_from}
    atomic_write_text(weights_json(cfg.run_dir), json.dumps(saved, indent=1))

    submission = None
    test_pred = None
    if preds.test is not None:
        test_scores = blend.test_scores(fitted, [preds.test[b] for b in names],
                                        [preds.refit[b] for b in names] if preds.refit else None, e.test_from,
                                        e.method)
        test_pred = blend.predict_with(test_scores, fitted["offsets"])
        submission = pd.DataFrame({"ImageID": preds.test_ids, "ans": test_pred.astype(int)})
        evals, _ = read_eval(cfg.data_dir)
        validate_submission(submission, evals["image_id"].tolist())
        atomic_write_csv(submission, submission_csv(cfg.run_dir))
        # what `maskfold pseudo` of another run reads: the blended probabilities (before the offsets), the classes
        # submitted, and the age cuts that give the classes their meaning
        atomic_save_npz(blended_probs_npz(cfg.run_dir), image_id=preds.test_ids,
                        probs=test_scores / test_scores.sum(1, keepdims=True), pred=test_pred,
                        age_cuts=np.asarray(cfg.data.age_cuts))
        log(f"eval set predicted by {TEST_MODELS[e.test_from]} (ensemble.test_from: {e.test_from}; the OOF figures "
            f"are the folds')")
    else:
        log("no eval/ folder: nothing to submit; OOF blend and report written")

    from ensemble.report import techniques_lines, techniques_used, write_report

    curves = {m.name: {k: pd.read_csv(pair_dir(m.run, m.backbone, k) / "metrics.csv")
                       for k in range(m.cfg.folds.n_splits) if (pair_dir(m.run, m.backbone, k) / "metrics.csv").is_file()}
              for m in preds.members}
    headline = write_report(out, rows, preds.per_fold, y, final_pred, test_pred, preds.labels, chosen,
                            cfg.data.age_cuts, curves, (names, blend.error_correlation(oof, y)),
                            {"ages": preds.ages, "files": [image_file(cfg.data_dir, p) for p in preds.paths],
                             "confidence": weighted[np.arange(len(y)), final_pred] / weighted.sum(1)},
                            techniques_lines(techniques_used(settings_used(cfg, preds.members)),
                                             {m.name: techniques_used(m.cfg.to_dict()) for m in preds.members}),
                            pseudo=pseudo_added(preds.members))
    for line in headline:
        log(line)
    if submission is not None:
        log(f"submission: {submission_csv(cfg.run_dir)} ({len(submission)} rows, validated)")
        truth = Path(cfg.data_dir) / "eval" / "labels.csv"
        if truth.is_file():  # the generated demo set ships its truth so the demo can score itself
            t = pd.read_csv(truth).set_index("ImageID").loc[submission["ImageID"], "ans"].to_numpy()
            log(f"eval macro F1 against {truth}: {scores(t, submission['ans'].to_numpy())['f1']:.4f}")
    return {"rows": rows, "weights": saved}
