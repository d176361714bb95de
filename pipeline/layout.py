"""Where everything lives under a run directory: the one module that names its folders and files.

    <run_dir>/config.yaml            the resolved config of the last command
    <run_dir>/folds.csv              folds stage
    <run_dir>/external/              external-data stage (pseudo-persons in the competition layout)
    <run_dir>/pseudo/                pseudo stage: eval photos labelled by another run's ensemble
    <run_dir>/models/<backbone>/fold<k>/{best.pt, last.pt, metrics.csv, oof.npz, test.npz, done.json}
    <run_dir>/models/<backbone>/full/{best.pt, last.pt, metrics.csv, test.npz, done.json}   the full-data refit
    <run_dir>/ensemble/              ensemble stage: report, blend, weights.json (what predict replays),
                                     test_probs.npz (the blended eval probabilities the pseudo stage reads),
                                     oof.npz (the blend's OOF probabilities the audit stage reads)
    <run_dir>/audit/                 audit stage: suspects.csv (label-fix rows), suspects.png, audit.md
    <run_dir>/gpu-locks/, tensorboard/  claims of local GPUs; TensorBoard logs when train.tensorboard is on
    <run_dir>/submission.csv
    <run_dir>/log.txt                what every command printed, timestamped, each entry led by its command line
    <run_dir>/run.json               provenance of the last train-all: times, host, device, code and library versions
    <run_dir>/tracking.json          which MLflow or W&B run (and child per pair) this run logs to (tracking.kind)
    <run_dir>/tune/                  tune stage: study.db, trial-<n>/ (each a run directory), trials.csv, best.yaml
    <run_dir>/.switch.json           only while an output set is being switched in (pipeline.switch)

The decoded-photo cache is the project's, not a run's: `cache_dir` (default runs/.cache/), shared by every run.

Whether a job's files make it finished, resumable or stale is pipeline.train.state's question; the digests that
identify its photos, labels, folds and eval set are here, beside the files they are read from.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a table is read: `maskfold --help` needs no pandas
    import pandas as pd

# What identifies a photo set, its labels and its folds; paths are left out (external photos' are absolute).
# soft_label exists only where pseudo-labelled photos are trained on their blended probabilities.
DIGEST_COLUMNS = ["image_id", "person_id", "gender", "age", "mask", "label", "source", "fold", "soft_label"]
REFIT = "full"  # the folder of a backbone's full-data model, beside its fold<k> folders


def _in_folder(name: str):
    """A path function: `name` under the folder it is given (a run directory, a job's or a stage's folder)."""
    def path(folder) -> Path:
        return Path(folder) / name
    return path


def _within(folder_of, name: str):
    """A path function: `name` inside the folder that `folder_of(run_dir)` names (a stage's folder)."""
    def path(run_dir) -> Path:
        return folder_of(run_dir) / name
    return path


folds_csv = _in_folder("folds.csv")
config_yaml = _in_folder("config.yaml")
external_dir = _in_folder("external")
pseudo_dir = _in_folder("pseudo")
ensemble_dir = _in_folder("ensemble")
submission_csv = _in_folder("submission.csv")
log_txt = _in_folder("log.txt")


def job_lines(run_dir) -> Path:
    """Parallel jobs' lines on their way to this process's terminal and log.txt: one file per train-all process,
    so two of them in one run directory keep their own lines."""
    return Path(run_dir) / f".job-lines.{os.getpid()}.txt"


run_json = _in_folder("run.json")
audit_dir = _in_folder("audit")
tracking_json = _in_folder("tracking.json")
tracking_lock = _in_folder(".tracking.lock")
tune_dir = _in_folder("tune")


def audit_files(run_dir) -> dict[str, Path]:
    """The audit stage's outputs: suspects (label-fix rows), their photos, the summary."""
    d = audit_dir(run_dir)
    return {"csv": d / "suspects.csv", "png": d / "suspects.png", "md": d / "audit.md"}


def tune_file(run_dir, name: str) -> Path:
    """A file of the tune stage: study.db, trials.csv, best.yaml, or a plot (history.png, importances.png)."""
    return tune_dir(run_dir) / name


def trial_dir(run_dir, number: int) -> Path:
    """A tune trial's own run directory (its models/<backbone>/fold<k>/ as train-all would write them)."""
    return tune_dir(run_dir) / f"trial-{number:03d}"


def trial_lock(run_dir, number: int) -> Path:
    """Held while a process trains the trial: free with the file still there means its process died."""
    return trial_dir(run_dir, number) / ".lock"


switch_journal = _in_folder(".switch.json")  # an output set's renames while it is switched in (pipeline.switch)


def models_dir(run_dir) -> Path:
    """Every job's folder of a run: models/<backbone>/fold<k>/ and the refit's models/<backbone>/full/."""
    return Path(run_dir) / "models"


def pair_dir(run_dir, backbone: str, fold: int) -> Path:
    return models_dir(run_dir) / backbone / f"fold{fold}"


def pair_oof_npz(run_dir, backbone: str, fold: int) -> Path:
    """A pair's out-of-fold logits (image_id, logits, labels) for its validation fold."""
    return oof_npz(pair_dir(run_dir, backbone, fold))


# The files of one job's folder (a pair's fold<k>/ or a refit's full/). best.pt: the model, the best epoch's weights
# (a refit's last epoch's) with what rebuilds it (records.BestMeta); last.pt: everything a rerun needs to continue
# after a kill (records.LastMeta); test.npz: the eval photos' logits in eval/info.csv order; done.json: written
# last, the record that makes the job finished (records.PairDone, RefitDone); attempts.jsonl: the Ray backend's
# line per attempt at the job and one when it ends.
# .lock: held while a process trains the job of this folder.
best_pt, last_pt, metrics_csv, oof_npz, test_npz, done_json, attempts_jsonl, job_lock = map(_in_folder, (
    "best.pt", "last.pt", "metrics.csv", "oof.npz", "test.npz", "done.json", "attempts.jsonl", ".lock"))


def storage_probe(run_dir, token: str) -> Path:
    """A file the Ray driver writes for one train-all and every node must see (pipeline.train.ray_jobs)."""
    return Path(run_dir) / f".storage-probe-{token}"


def model_files(folder) -> list[Path]:
    """The files of a job's model and predictions: what starting it over removes. Its tensorboard events and the
    Ray backend's attempts.jsonl are a history of its attempts, and stay."""
    return [path(folder) for path in JOB_FILES.values()]


def gpu_lock(run_dir, index: int) -> Path:
    return Path(run_dir) / "gpu-locks" / f"cuda{index}.lock"


def tensorboard_dir(run_dir, backbone: str, fold: int | None) -> Path:
    """fold: a fold number, or None for the full-data refit."""
    return Path(run_dir) / "tensorboard" / backbone / (REFIT if fold is None else f"fold{fold}")


weights_json = _within(ensemble_dir, "weights.json")
# the ensemble's blended eval-set probabilities (image_id, probs, pred, age_cuts): what `maskfold pseudo` reads
blended_probs_npz = _within(ensemble_dir, "test_probs.npz")
# the chosen blend's OOF probabilities (image_id, probs, labels, pred): what `maskfold audit` reads
blended_oof_npz = _within(ensemble_dir, "oof.npz")


def refit_dir(run_dir, backbone: str) -> Path:
    return models_dir(run_dir) / backbone / REFIT


def external_lock(run_dir) -> Path:
    """Held while `maskfold external` writes or probes a run's outside faces: one such command per run at a time."""
    return external_dir(run_dir) / ".lock"


def folds_digest(folds: pd.DataFrame) -> str:
    """Content identity of a fold table: its photos, labels and fold assignment, whatever the paths."""
    cols = [c for c in DIGEST_COLUMNS if c in folds.columns]
    table = folds[cols].astype(str).sort_values("image_id", kind="stable")
    return hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()[:16]


def _digest_of_bytes(raw: bytes) -> str:
    import pandas as pd

    return folds_digest(pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False))


def read_folds(run_dir) -> tuple[pd.DataFrame, str]:
    """folds.csv as training uses it, and its digest, both from one read (a rerun of `folds` cannot slip between)."""
    raw = folds_csv(run_dir).read_bytes()
    return read_fold_table(io.BytesIO(raw)), _digest_of_bytes(raw)


def read_fold_table(source) -> pd.DataFrame:
    """A fold table with its text as written: a person folder named NA, null or None stays that name (pandas would
    read it as missing); only an empty soft_label is missing (a hard label)."""
    import pandas as pd

    return pd.read_csv(source, dtype={"person_id": str, "race": str}, keep_default_na=False,
                       na_values={"soft_label": [""]})


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, mtime_ns: int, size: int, inode: int, kind: str) -> str:
    # keyed on the inode too: an atomic rewrite of the same size within one mtime tick is a new file
    import pandas as pd

    raw = Path(path).read_bytes()
    if kind == "folds":
        return _digest_of_bytes(raw)
    ids = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)["ImageID"]
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _digest(path: Path, kind: str) -> str | None:
    import pandas as pd

    try:
        st = path.stat()
        return _file_digest(str(path), st.st_mtime_ns, st.st_size, st.st_ino, kind)
    except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def run_digest(run_dir) -> str | None:
    """folds_digest of <run_dir>/folds.csv, or None when there is none."""
    return _digest(folds_csv(run_dir), "folds")


def eval_digest(data_dir) -> str | None:
    """Identity of the eval set (eval/info.csv's ImageIDs in order), or None for a train-only data set."""
    return _digest(Path(data_dir) / "eval" / "info.csv", "eval")
# ---------------------------------------------------------------- stage outputs
# Every file a stage writes under the run directory, so no stage spells a run-directory name of its own. A stage's
# extra training photos are in the competition layout (train/train.csv, train/images/<person>/), with extra.json
# saying how to read them (pipeline.data.extra), written once they are whole; summary.json: what the stage (external,
# pseudo) did and under which settings.
extra_train_csv = _in_folder("train/train.csv")
extra_images_dir = _in_folder("train/images")
extra_record = _in_folder("extra.json")
stage_summary = _in_folder("summary.json")


# the `masked` face detector (data.face_detector) `maskfold external` trains on its pseudo-persons
masked_detector = _within(external_dir, "face_detector.svm")
# persons whose faces are one face (pipeline.faces.identity): the pairs, and a picture of each side by side
same_faces_csv = _in_folder("same_faces.csv")
same_faces_png = _in_folder("same_faces.png")
external_sheet_png = _within(external_dir, "contact_sheet.png")
# the domain probe's figures (`maskfold external --probe`)
external_probe_json = _within(external_dir, "probe.json")


def ensemble_file(run_dir, name: str) -> Path:
    """A file of the ensemble's output set (ENSEMBLE_FILES)."""
    return ensemble_dir(run_dir) / ENSEMBLE_FILES[name]


ENSEMBLE_FILES = {"report": "report.md", "confusion": "confusion.png", "class_f1": "class_f1.png",
                  "curves": "curves.png", "mistakes": "mistakes.png"}


# A pair's or refit's files by what they hold, for the readers outside training (ensemble, tools, tracking).
JOB_FILES = {"best": best_pt, "last": last_pt, "metrics": metrics_csv, "oof": oof_npz, "test": test_npz,
             "done": done_json}


def pair_file(run_dir, backbone: str, fold: int, what: str) -> Path:
    """One of a pair's files (JOB_FILES: best, last, metrics, oof, test, done)."""
    return job_file(pair_dir(run_dir, backbone, fold), what)


def refit_file(run_dir, backbone: str, what: str) -> Path:
    """One of a refit's files (JOB_FILES but oof)."""
    return job_file(refit_dir(run_dir, backbone), what)


def job_file(job_dir, what: str) -> Path:
    """One of the files (JOB_FILES) of a pair's or refit's folder."""
    return JOB_FILES[what](job_dir)


def tune_study_db(run_dir) -> Path:
    """The Optuna study (SQLite) when tune.storage names none."""
    return tune_file(run_dir, "study.db")


def tune_trials_csv(run_dir) -> Path:
    return tune_file(run_dir, "trials.csv")


def tune_best_yaml(run_dir) -> Path:
    """The best trial as an experiment file."""
    return tune_file(run_dir, "best.yaml")


TUNE_PLOTS = {"history": "history.png", "importances": "importances.png", "epochs": "epochs.png"}


def tune_plot(run_dir, kind: str) -> Path:
    """One of the study's plots (TUNE_PLOTS)."""
    return tune_file(run_dir, TUNE_PLOTS[kind])


def tracked_files(job_dir) -> list[Path]:
    """What a tracker uploads from a pair's or refit's folder once it is done (those present)."""
    return [p for p in (job_file(job_dir, "metrics"), job_file(job_dir, "done")) if p.is_file()]
