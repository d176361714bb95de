"""A face member's job (a backbone of kind face_embedding): the run's photos embedded by dlib's face-recognition
network (pipeline.faces.embeddings, cached once per photo), then a head per task fitted on the job's training rows
(pipeline.model.face_head), written as a network's job writes: best.pt (the head, as tensors, with what predicts
new photos), oof.npz and test.npz (18 class log-probabilities), metrics.csv (its one "epoch") and done.json last.

Rows and targets are the networks' own (pipeline.data.targets.job_rows, training_targets and the soft labels), so
outside faces, pseudo-labelled photos and label fixes count as they count for networks, and a fold's validation
persons are never fitted on. The job has no epochs: fitting takes seconds once the embeddings are cached, so a job
killed before its done.json simply fits again; a job whose head is whole but whose predictions are owed (another
TTA, another eval set) predicts again from best.pt.
"""
from __future__ import annotations

import dataclasses
import socket
import time

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.data.extra import with_soft_labels
from pipeline.data.targets import job_rows, training_targets
from pipeline.io import atomic_save_npz, atomic_torch_save, atomic_write_csv, atomic_write_text, remove_stale_temporaries
from pipeline.labels import TASKS, decode_label
from pipeline.layout import best_pt, done_json, metrics_csv, model_files, oof_npz, test_npz
from pipeline.model import face_head
from pipeline.model.metrics import scores
from pipeline.records import BestMeta, Done, PairDone, RefitDone
from pipeline.train.job import Job
from pipeline.train.rundata import RunData
from pipeline.train.state import FINISHED, TRAINED, JobState, job_state

KIND = "face_embedding"


def used_views(tta) -> list[int]:
    """The embedding views a prediction averages: the mirror image where the config's TTA has hflip."""
    return [0, 1] if "hflip" in tta else [0]


def task_f1s(labels: np.ndarray, logp: np.ndarray) -> dict:
    """Macro F1 of each task's part of the predicted classes."""
    from sklearn.metrics import f1_score

    truth, pred = decode_label(labels), decode_label(logp.argmax(1))
    return {f"{name}_f1": float(f1_score(t, p, average="macro", labels=list(range(n)), zero_division=0))
            for (name, n), t, p in zip(TASKS, truth, pred)}


class FaceJob:
    """One job of a face member, with Trainer's interface where run_job uses it: fit(state) -> its done record."""

    def __init__(self, cfg: Config, job: Job, data: RunData, log=print, warned: set | None = None):
        self.cfg, self.job, self.data, self.log = cfg, job, data, log
        self.bb = cfg.backbone(job.backbone)
        self.dir = job.folder
        self.train_rows, self.val_rows = job_rows(data.folds, job.fold, cfg)
        from pipeline.tracking import pair_tracker

        # its metrics row and done record, as a network's epochs and done are
        self.tracker = pair_tracker(cfg, self.bb.name, self.dir.name, job.identity, log, warned)

    def fit(self, state: JobState | None = None) -> Done:
        from pipeline.faces.embeddings import run_embeddings

        started = time.time()
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.dir)
        state = state or job_state(self.cfg, self.job)
        emb = self.data.embeddings
        if emb is None:  # a job on its own (`maskfold train`): the run's embeddings, from the cache where it can
            emb = run_embeddings(self.cfg, self.data.folds, self.data.evals, self.log)
        if state.status in (TRAINED, FINISHED):
            self.log(f"{self.job.name}: fitted before; predicting again from best.pt ({state.reason})")
            head = self._read_head()
        else:
            if state.reason:
                self.log(f"{self.job.name}: {state.reason}; starting it over")
            for path in model_files(self.dir):
                path.unlink(missing_ok=True)
            head = self._fit_head(emb)
        return self._finish(head, emb, started)

    def _fit_head(self, emb) -> dict:
        folds, rows = self.data.folds, self.train_rows
        targets = with_soft_labels(folds, training_targets(folds, self.cfg.data))
        persons = folds["person_id"].astype(str).to_numpy()
        self.log(f"{self.job.name}: fitting a head per task on {len(rows)} photos of "
                 f"{len(set(persons[rows]))} training persons")
        head = face_head.fit_head(emb.train[rows], targets[rows], persons[rows], self.cfg.train.class_weight_power,
                                  self.log)
        self._write_best(head, emb)
        return head

    def _write_best(self, head: dict, emb) -> None:
        import torch

        meta = BestMeta(backbone=dataclasses.asdict(self.bb), config=self.cfg.to_dict(), mean=[], std=[],
                        img_size=list(self.cfg.data.cache_size), epoch=1, f1=-1.0, hash=self.job.identity,
                        data=self.data.digest, fold=self.job.fold)
        state = {k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in head.items()}
        ckpt = meta.to_checkpoint(state)
        ckpt["face"] = {"prior": list(emb.prior), "chain": emb.chain}  # how a new photo gets its box (predict)
        atomic_torch_save(ckpt, best_pt(self.dir))

    def _read_head(self) -> dict:
        return read_head(best_pt(self.dir))[0]

    def _finish(self, head: dict, emb, started: float) -> Done:
        views = used_views(self.cfg.tta)
        folds, data = self.data.folds, self.data
        test = data.evals is not None and emb.eval is not None
        if test:
            logp = face_head.class_log_probs(head, emb.eval[:, views])
            atomic_save_npz(test_npz(self.dir), image_id=data.evals["image_id"].to_numpy().astype(str),
                            logits=logp.astype(np.float32))
        seconds = round(time.time() - started, 1)
        common = dict(hash=self.job.identity, data=data.digest, tta=list(self.cfg.tta), eval=data.eval_digest,
                      test=test, backbone=self.bb.name, epochs_run=1, host=socket.gethostname(), device="cpu",
                      train_seconds=seconds, provenance=_provenance(started))
        if self.job.fold is None:
            self.log(f"{self.job.name}: head fitted on {len(self.train_rows)} photos; test predictions "
                     f"{'written' if test else 'not needed (no eval set)'}")
            return self._write_done(RefitDone(**common, epochs=self.job.epochs, photos=len(self.train_rows)))
        labels = folds["label"].to_numpy()[self.val_rows]
        logp = face_head.class_log_probs(head, emb.train[self.val_rows][:, views])
        atomic_save_npz(oof_npz(self.dir), image_id=folds["image_id"].to_numpy()[self.val_rows].astype(str),
                        labels=labels, logits=logp.astype(np.float32))
        s, per_task = scores(labels, logp.argmax(1)), task_f1s(labels, logp)
        loss = float(-logp[np.arange(len(labels)), labels].mean())
        row = {"epoch": 1, "val_loss": loss, "val_f1": s["f1"], "val_acc": s["acc"],
               **{f"val_{k}": v for k, v in per_task.items()}, "seconds": seconds}
        atomic_write_csv(pd.DataFrame([row]), metrics_csv(self.dir), float_format="%.6g")
        self.tracker.epoch(row)
        self.log(f"{self.job.name}: OOF macro F1 {s['f1']:.4f} ("
                 + ", ".join(f"{k.replace('_f1', '')} F1 {v:.3f}" for k, v in per_task.items()) + ")")
        return self._write_done(PairDone(**common, fold=self.job.fold, best_epoch=1, val_f1=s["f1"],
                                         oof_f1_tta=s["f1"]))

    def _write_done(self, done: Done) -> Done:
        atomic_write_text(done_json(self.dir), done.to_json())
        self.tracker.done(dataclasses.asdict(done), self.dir)
        return done


def _provenance(started: float) -> dict:
    from pipeline.train.provenance import provenance

    return provenance(started, "cpu")


def read_head(path) -> tuple[dict, dict]:
    """A face member's best.pt: its head (arrays) and its face settings (prior box, detector chain)."""
    import torch

    return head_of(torch.load(path, map_location="cpu", weights_only=True))


def head_of(ckpt: dict) -> tuple[dict, dict]:
    """The head (arrays) and face settings of a face member's checkpoint, read already."""
    return {k: v.numpy() for k, v in ckpt["model"].items()}, ckpt["face"]


def without_unavailable(cfg: Config, log=print) -> Config:
    """`cfg` less its face members where the `faces` extra is missing (each named in one line), so that a run
    without the extra trains and blends its networks; unchanged otherwise."""
    from pipeline.errors import MissingInput
    from pipeline.faces.embeddings import missing_extra

    face = [b.name for b in cfg.backbones if b.kind == KIND]
    why = missing_extra() if face else None
    if why is None:
        return cfg
    kept = [b for b in cfg.backbones if b.kind != KIND]
    if not kept:
        raise MissingInput(f"every backbone is a face member ({', '.join(face)}) and {why}")
    log(f"skipped the face member{'s' if len(face) > 1 else ''} {', '.join(face)}: {why}")
    return dataclasses.replace(cfg, backbones=kept)


def warm_embeddings(cfg: Config, data: RunData, log=print):
    """The run's embeddings computed once before its jobs, which take them from the RunData (RunData.embeddings);
    None when the config has no face member."""
    if not any(b.kind == KIND for b in cfg.backbones):
        return None
    from pipeline.faces.embeddings import run_embeddings

    return run_embeddings(cfg, data.folds, data.evals, log)
