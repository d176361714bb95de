"""`maskfold ensemble`: blends the members' OOF and test predictions (ensemble.members reads them), chooses the
blend with the best honest OOF figure, and writes the submission, weights.json, the report and test_probs.npz (the
blended eval probabilities that another run's pseudo stage reads). ensemble.test_from picks the models that
predict the eval set (the folds, the full-data refits, or both); the OOF figures are always the folds'.

Never loads a model: what it needs from training is on disk as predictions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble import blend
from ensemble.age_cut import age_cut_blends, load_member_ages
from ensemble.age_report import age_lines
from ensemble.members import load_predictions, run_labels
from ensemble.submission import validate_submission
from ensemble.weights import OWN_RUN, MemberRef, Weights
from pipeline.config import Config
from pipeline.data.extra import class_counts
from pipeline.io import atomic_save_npz, atomic_write_csv, atomic_write_text, remove_stale_temporaries
from pipeline.layout import (
    blended_oof_npz,
    blended_probs_npz,
    ensemble_dir,
    ensemble_file,
    folds_csv,
    pair_file,
    submission_csv,
    weights_json,
)
from pipeline.model.metrics import scores
from pipeline.tables.eval import read_eval
from pipeline.tables.fields import image_file
from pipeline.tracking import track_run
from pipeline.train.face_job import without_unavailable
from pipeline.train.state import refit_done

KIND_LABELS = {"equal": "equal weights", "weights": "weights", "selection": "selection", "stacking": "stacking",
               "tasks": "per-task weights"}
TEST_MODELS = {"folds": "the fold models", "refit": "the full-data refits",
               "both": "the fold models and the full-data refits (their mean)"}


def blend_kinds(e) -> list[tuple[str, bool]]:
    """Every (blend, with offsets) the config asks for; a hard vote fits nothing."""
    if e.method == "hard":
        return [("equal", False)]
    kinds = ["equal"] + [k for k, on in (("weights", e.search_weights), ("selection", e.selection),
                                         ("stacking", e.stacking), ("tasks", e.task_weights)) if on]
    return [(k, off) for k in kinds for off in ((False, True) if e.tune_offsets else (False,))]


def settings_used(cfg: Config, members, test_from: str | None = None) -> dict:
    """The config as a dict, with train.refit on where a member has a refit: `train-all --refit` turns it on for
    that command only, and the ensemble's own config need not say it; and ensemble.test_from as used (auto
    resolved)."""
    used = cfg.to_dict()
    used["train"]["refit"] = cfg.train.refit or any(refit_done(m.run, m.backbone) for m in members)
    used["ensemble"]["test_from"] = test_from or cfg.ensemble.test_from
    return used


def pseudo_added(members) -> dict[str, np.ndarray]:
    """Pseudo-labelled photos per class that each member's run trained on (runs without any left out)."""
    runs = list(dict.fromkeys(m.run for m in members))
    labels = run_labels(runs) if len(runs) > 1 else ["this run"]
    counts = {label: class_counts(folds_csv(r)) for label, r in zip(labels, runs)}
    return {label: c for label, c in counts.items() if c is not None}


@dataclass
class Blends:
    """Every blend the config asks for, fitted on the OOF predictions: label -> fit, the scores table's rows, each
    blend's honest figure and honest OOF classes, the person splits of the nested figures, and the age-cut fitter
    (ensemble.tune_age_cut; None when off)."""

    fits: dict
    rows: dict
    honest: dict
    honest_pred: dict
    persons: np.ndarray
    cutter: object | None


@dataclass
class Chosen:
    """The blend used for the submission: its label, fit and fitter (ensemble.blend or the age-cut one), its blended
    OOF probabilities and OOF classes (offsets applied), and the honest figure of the submission: of the choice
    itself where the blend was chosen by the nested figures (choice_judged_nested), else of the blend."""

    label: str
    fitted: dict
    fitter: object
    weighted: np.ndarray
    pred: np.ndarray
    honest_f1: float


def run_ensemble(cfg: Config, log=print, held: list | None = None) -> dict:
    """held: the output set its files join (ensemble.outputs), where they land together."""
    for folder in (cfg.run_dir, ensemble_dir(cfg.run_dir)):
        remove_stale_temporaries(folder)  # a killed earlier ensemble's half-written files
    cfg = without_unavailable(cfg, log)  # a face member that train-all skipped (no `faces` extra) is not waited for
    preds = load_predictions(cfg)
    oof = [preds.oof[b] for b in preds.oof]
    blends = fit_blends(cfg, preds, oof, log)
    chosen = choose(cfg, blends, oof, preds.labels, log)
    atomic_save_npz(blended_oof_npz(cfg.run_dir), held, image_id=preds.image_ids,
                    probs=chosen.weighted.astype(np.float32), labels=preds.labels, pred=chosen.pred)
    saved = weights_record(cfg, preds, blends, chosen)
    atomic_write_text(weights_json(cfg.run_dir), saved.to_json(), held)
    submission, test_pred = write_test_outputs(cfg, preds, chosen, log, held)
    for line in _write_report(cfg, preds, oof, blends, chosen, test_pred, saved.age_cut, held):
        log(line)
    eval_f1 = _closing_lines(cfg, submission, log)
    return {"rows": blends.rows, "weights": saved,
            "figures": ensemble_figures(blends.rows, blends.honest, chosen.honest_f1, eval_f1)}


def fit_blends(cfg: Config, preds, oof: list[np.ndarray], log) -> Blends:
    """Each blend fitted, with its in-sample and honest figures. A plain vote fits nothing, so its OOF score is
    already honest; fitted blends are scored nested (fit on some persons, score on the others; stacking: on the
    other folds, as it would be used)."""
    e, y = cfg.ensemble, preds.labels
    kw = {"steps": e.selection_steps, "c": e.stacking_c, "notes": []}
    persons = blend.person_parts(preds.persons, e.nested_splits, seed=cfg.seed)
    rows = {f"backbone {b}": scores(y, p.argmax(1)) for b, p in zip(preds.oof, oof)}
    fits, honest, honest_pred = {}, {}, {}
    cutter = age_cut_blends(cfg, preds, log)  # ensemble.tune_age_cut: each blend again, on the age cut fitted first
    for kind, off, fitter in [(k, o, f) for f in (blend, cutter) if f for k, o in blend_kinds(e)]:
        label = KIND_LABELS[kind] + (" + offsets" if off else "") + (" + age cut" if fitter is cutter else "")
        fits[label] = fitter.fit_blend(kind, oof, y, off, e.method, **kw)
        blended = fitter.apply_blend(fits[label], oof, e.method)
        pred = blend.predict_with(blended, fits[label]["offsets"])
        in_sample = scores(y, pred)
        if kind == "equal" and not off and fitter is blend:
            rows[f"ensemble ({e.method} vote, equal weights)"] = in_sample
            honest[label], honest_pred[label] = in_sample["f1"], pred
            continue
        rows[f"ensemble + {label} (in-sample)"] = in_sample
        part, how = (preds.folds, "per outer fold") if kind == "stacking" else (persons, f"{e.nested_splits} person splits")
        honest_pred[label] = fitter.nested_blend(kind, oof, y, part, off, e.method, **kw)
        nested = scores(y, honest_pred[label])
        rows[f"ensemble + {label} (nested, {how})"] = nested
        honest[label] = nested["f1"]
    for line in kw["notes"]:  # e.g. a stacker that did not converge: once, with what to change
        log(line)
    for line in task_weight_lines(fits, list(preds.oof)):
        log(line)
    return Blends(fits, rows, honest, honest_pred, persons, cutter)


def choice_judged_nested(honest_pred: dict, y: np.ndarray, part: np.ndarray) -> np.ndarray:
    """OOF classes of choosing a blend by its honest figure, the choice itself judged nested: each person split
    takes the honest classes of the blend that scores best on the other splits. The best of several honest figures
    is itself a tuned choice, so it flatters; this is the figure the eval set would see for the choosing."""
    pred = np.zeros(len(y), dtype=np.int64)
    for k in np.unique(part):
        held = part == k
        best = max(honest_pred, key=lambda label: blend.fast_macro_f1(y[~held], honest_pred[label][~held]))
        pred[held] = honest_pred[best][held]
    return pred


def choose(cfg: Config, blends: Blends, oof: list[np.ndarray], y: np.ndarray, log) -> Chosen:
    """The blend with the best honest figure (ensemble.choose_by_nested), else the last one asked for."""
    e = cfg.ensemble
    label = max(blends.honest, key=blends.honest.get) if e.choose_by_nested else list(blends.fits)[-1]
    fitted = blends.fits[label]
    fitter = blends.cutter if "age_shift" in fitted else blend
    weighted = fitter.apply_blend(fitted, oof, e.method)
    honest_f1 = blends.honest[label]
    how = ""
    if e.choose_by_nested and len(blends.honest) > 1:
        choice = scores(y, choice_judged_nested(blends.honest_pred, y, blends.persons))
        blends.rows[f"ensemble: the choice of the best honest blend (nested, {e.nested_splits} person splits)"] = choice
        honest_f1 = choice["f1"]
        how = (f"; chosen by the nested figures, the best of {len(blends.honest)} at {blends.honest[label]:.4f}, "
               f"the choice itself judged nested")
    log(f"used for the submission: {label} (honest OOF macro F1 {honest_f1:.4f}{how})")
    return Chosen(label, fitted, fitter, weighted, blend.predict_with(weighted, fitted["offsets"]), honest_f1)


def weights_record(cfg: Config, preds, blends: Blends, chosen: Chosen) -> Weights:
    """weights.json: what `maskfold predict` replays to reproduce the submission."""
    fitted, stacker = chosen.fitted, chosen.fitted["stacker"]
    tuned_cut = chosen.fitter is blends.cutter
    return Weights(method=cfg.ensemble.method, backbones=list(preds.oof), chosen=chosen.label,
                   honest_f1=blends.honest, submission_honest_f1=chosen.honest_f1,
                   members=[MemberRef(name=m.name, run=OWN_RUN if m.run == cfg.run_dir else str(Path(m.run).resolve()),
                                      backbone=m.backbone, tta=m.cfg.tta, n_splits=m.cfg.folds.n_splits)
                            for m in preds.members],
                   weights=[float(v) for v in fitted["weights"]], offsets=[float(v) for v in fitted["offsets"]],
                   stacker=None if stacker is None else {k: np.asarray(v).tolist() for k, v in stacker.items()},
                   task_weights=np.asarray(fitted["task_weights"]).tolist() if "task_weights" in fitted else None,
                   tta=cfg.tta, n_splits=cfg.folds.n_splits, test_from=preds.test_from,
                   # the cuts that sum the years members' ages into bands (ensemble.tune_age_cut), when tuned
                   age_cuts=list(cfg.data.age_cuts), age_cut=blends.cutter.cuts_used(fitted) if tuned_cut else None)


def write_test_outputs(cfg: Config, preds, chosen: Chosen, log, held=None) -> tuple[pd.DataFrame | None,
                                                                                     np.ndarray | None]:
    """The submission and the blended eval probabilities (test_probs.npz); (None, None) without an eval set."""
    if preds.test is None:
        log("no eval/ folder: nothing to submit; OOF blend and report written")
        return None, None
    names, fitted, method = list(preds.oof), chosen.fitted, cfg.ensemble.method
    test_in = ([preds.test[b] for b in names], [preds.refit[b] for b in names] if preds.refit else None)
    if chosen.fitter is not blend:  # the members' eval probabilities re-summed at the tuned cuts
        test_in = chosen.fitter.test_inputs(fitted, *test_in)
    test_scores = blend.test_scores(fitted, *test_in, preds.test_from, method)
    test_pred = blend.predict_with(test_scores, fitted["offsets"])
    submission = pd.DataFrame({"ImageID": preds.test_ids, "ans": test_pred.astype(int)})
    evals, _ = read_eval(cfg.data_dir)
    validate_submission(submission, evals["image_id"].tolist())
    atomic_write_csv(submission, submission_csv(cfg.run_dir), held=held)
    # what `maskfold pseudo` of another run reads: the blended probabilities (before the offsets), the classes
    # submitted, and the age cuts that give the classes their meaning
    atomic_save_npz(blended_probs_npz(cfg.run_dir), held, image_id=preds.test_ids,
                    probs=test_scores / test_scores.sum(1, keepdims=True), pred=test_pred,
                    age_cuts=np.asarray(cfg.data.age_cuts))
    log(f"eval set predicted by {TEST_MODELS[preds.test_from]} (ensemble.test_from: {cfg.ensemble.test_from}; the "
        f"OOF figures are the folds')")
    return submission, test_pred


def _write_report(cfg: Config, preds, oof: list[np.ndarray], blends: Blends, chosen: Chosen,
                  test_pred: np.ndarray | None, age_cut, held=None) -> list[str]:
    # looked up when called: a test interrupts the ensemble between the submission and the report through it
    from ensemble import report

    names, y = list(preds.oof), preds.labels
    curves = {m.name: {k: pd.read_csv(pair_file(m.run, m.backbone, k, "metrics"))
                       for k in range(m.cfg.folds.n_splits) if pair_file(m.run, m.backbone, k, "metrics").is_file()}
              for m in preds.members}
    ages = (blends.cutter.members if blends.cutter else load_member_ages(preds, preds.test_from))
    techniques = report.techniques_lines(report.techniques_used(settings_used(cfg, preds.members, preds.test_from)),
                                         {m.name: report.techniques_used(m.cfg.to_dict()) for m in preds.members})
    photos = {"ages": preds.ages, "files": [image_file(cfg.data_dir, p) for p in preds.paths],
              "confidence": chosen.weighted[np.arange(len(y)), chosen.pred] / chosen.weighted.sum(1)}
    return report.write_report(ensemble_dir(cfg.run_dir), report.ReportInput(
        blends.rows, preds.per_fold, y, chosen.pred, test_pred, preds.labels, chosen.label, cfg.data.age_cuts,
        curves, (names, blend.error_correlation(oof, y)), photos, techniques, pseudo_added(preds.members),
        age_lines(names, ages, preds.ages, y, chosen.pred, cfg.data.age_cuts, age_cut)
        + _task_weight_section(blends.fits, names)), held)


def _task_weight_section(fits: dict, names: list[str]) -> list[str]:
    lines = task_weight_lines(fits, names)
    if not lines:
        return []
    return ["", "## Per-task weights", "", "The per-task blend's member weights for each task (fitted on every OOF "
            "photo; its honest figure is in the scores table):", ""] + [f"- {line}" for line in lines] + [""]


def track_ensemble(cfg: Config, result: dict, log=print) -> None:
    """The ensemble's figures, report and charts to the run's tracker (tracking.*). Called once the outputs are in
    place: inside `maskfold ensemble` they stay temporaries until the whole set is switched in."""
    out = ensemble_dir(cfg.run_dir)
    track_run(cfg, result["figures"], [ensemble_file(cfg.run_dir, "report"), weights_json(cfg.run_dir),
                                       *sorted(out.glob("*.png"))], "ensemble", log)


def _closing_lines(cfg: Config, submission: pd.DataFrame | None, log) -> float | None:
    """The submission's line and, where the eval truth is known (the generated demo set ships it so the demo can
    score itself), the eval macro F1, which it returns."""
    if submission is None:
        return None
    log(f"submission: {submission_csv(cfg.run_dir)} ({len(submission)} rows, validated)")
    truth = Path(cfg.data_dir) / "eval" / "labels.csv"
    if not truth.is_file():
        return None
    t = pd.read_csv(truth).set_index("ImageID").loc[submission["ImageID"], "ans"].to_numpy()
    eval_f1 = scores(t, submission["ans"].to_numpy())["f1"]
    log(f"eval macro F1 against {truth}: {eval_f1:.4f}")
    return eval_f1


def ensemble_figures(rows: dict, honest: dict, submission_f1: float, eval_f1: float | None) -> dict:
    """The report's figures as metric names every tracker takes: `f1/<row>`, `honest_f1/<blend>`, the submission's
    honest F1 (Chosen.honest_f1) and, where the eval truth is known (the demo), the eval F1."""
    def slug(text: str) -> str:
        return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())

    figures = {f"{k}/{slug(label)}": v for label, s in rows.items() for k, v in s.items() if k in ("f1", "acc")}
    figures.update({f"honest_f1/{slug(label)}": v for label, v in honest.items()})
    return {**figures, "honest_f1": submission_f1, "eval_f1": eval_f1}


def task_weight_lines(fits: dict, names: list[str]) -> list[str]:
    """The per-task blend's weights (fitted on every OOF photo), a line per task, for the log and the report."""
    from ensemble.task_blend import weight_lines

    label = KIND_LABELS["tasks"]
    if label not in fits:
        return []
    return [f"{label}: " + line for line in weight_lines(fits[label]["task_weights"], names)]
