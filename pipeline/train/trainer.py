"""Training one job: a (backbone, fold) pair, or a backbone's full-data refit (pipeline.train.job): epochs of train
(+ validate, for a fold), checkpoints, resume, then its predictions (a fold's OOF and test, a refit's test).

A refit validates nothing, so no epoch can be chosen: its last epoch's weights are the model, and its learning-rate
schedule spans exactly its epochs (the median of its folds' best), so training ends at the schedule's low rate
instead of wherever a fold's best epoch happened to fall.

Files: pipeline.layout's job files under the job's folder. last.pt holds everything a rerun needs to continue
after a kill; every write is atomic, so a kill at any moment leaves either the previous file or the new one.
"""
from __future__ import annotations

import dataclasses
import socket
import time

import numpy as np
import pandas as pd
import torch

from pipeline.config import Config, LossTerm
from pipeline.data.extra import with_soft_labels
from pipeline.data.mixing import mix_batch
from pipeline.data.targets import job_rows, training_targets
from pipeline.data.transforms import build_transform
from pipeline.io import (
    atomic_save_npz,
    atomic_torch_save,
    atomic_write_csv,
    atomic_write_text,
    remove_stale_temporaries,
)
from pipeline.labels import NUM_CLASSES
from pipeline.layout import best_pt, done_json, last_pt, metrics_csv, model_files, oof_npz, test_npz
from pipeline.model import models
from pipeline.model.criterion import build_criterion
from pipeline.model.heads import timm_body
from pipeline.model.inference import (
    Inference,
    autocast_for,
    norm_tensors,
    predict_logits,
    resolve_device,
    to_model_input,
)
from pipeline.model.losses import build_loss
from pipeline.model.metrics import macro_f1, scores
from pipeline.model.optim import build_optimizer, build_scheduler
from pipeline.model.years import class_scores, prediction_arrays, with_age_targets
from pipeline.progress import bar as progress_bar
from pipeline.records import BestMeta, Done, LastMeta, PairDone, RefitDone
from pipeline.tracking import pair_tracker
from pipeline.train.board import require_tensorboard, write_epoch
from pipeline.train.job import Job
from pipeline.train.loaders import Loaders
from pipeline.train.provenance import provenance
from pipeline.train.rng import rng_state, seed_everything, set_rng_state
from pipeline.train.rundata import RunData
from pipeline.train.state import FINISHED, MISSING, RESUMABLE, STALE, TRAINED, JobState, job_state, own_last


class Trainer:
    """One job of any kind: what differs between a fold and a refit is in the job (its epochs, seed, identity,
    folder) and in whether it validates (job.fold)."""

    def __init__(self, cfg: Config, job: Job, data: RunData, device=None, progress=True, log=print,
                 warned: set | None = None):
        self.cfg, self.job, self.log, self.progress = cfg, job, log, progress
        self.bb = cfg.backbone(job.backbone)
        self.validates = job.fold is not None
        self.name, self.tag = job.name, job.folder.name  # in messages; in progress bars
        self.settings = {**cfg.resolved(self.bb), "epochs": job.epochs}
        self.hash, self.digest, self.dir = job.identity, data.digest, job.folder
        self.state: JobState | None = None  # where the job stood when prepare() looked
        # epochs and done, as written; `warned`: the tracking warnings the jobs beside it gave already
        self.tracker = pair_tracker(cfg, self.bb.name, self.dir.name, self.hash, log, warned)
        self.data = data
        self.device = resolve_device(device or cfg.train.device)
        t = cfg.train
        self.amp = t.amp if self.device.type == "cuda" else "none"
        seed_everything(cfg.seed * 1000 + job.seed)

        folds = data.folds
        self.train_rows, self.val_rows = job_rows(folds, job.fold, cfg)
        labels = folds["label"].to_numpy()
        self.train_labels, self.val_labels = labels[self.train_rows], labels[self.val_rows]
        # one-hot, soft near the age cuts (data.soften_near_cut), pseudo-labelled photos' probabilities where soft
        # a years age head's Gaussian over ages follows the 18 columns (pipeline.model.years)
        targets = with_soft_labels(folds, training_targets(folds, cfg.data))
        self.train_targets = with_age_targets(targets, folds, t)[self.train_rows]

        self.model = models.create(self.bb, head=t.head, years=models.years_spec(cfg)).to(self.device)
        self.mean, self.std = models.norm_stats(self.model)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if t.compile else self.model
        size = tuple(self.settings["img_size"])
        cache = tuple(cfg.data.cache_size)
        self.train_tf = build_transform(cfg.augment.train, cache, size, "augment.train")
        self.val_tf = build_transform(cfg.augment.val, cache, size, "augment.val")
        counts = np.bincount(self.train_labels, minlength=NUM_CLASSES)
        self.criterion = build_criterion(t, counts).to(self.device)
        self.val_criterion = build_loss([LossTerm("ce")])  # plain CE: comparable across loss and head settings
        # built while every parameter is trainable (freeze_epochs comes later): timm leaves frozen ones out
        self.opt = build_optimizer(timm_body(self.model), t, self.settings["lr"])
        self.steps_per_epoch = self._steps_per_epoch()
        self.sched = build_scheduler(self.opt, t, self.settings["epochs"], self.steps_per_epoch)
        self.updates = 0  # optimiser steps so far: the schedule's clock
        self.lrs_used = []  # the head's lr at each optimiser step of the epoch under way (metrics.csv's lr)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        self.ema = None
        if t.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=t.ema)
        self.norm = norm_tensors(self.mean, self.std, self.device)
        # best_epoch: 1-based, as the logs print it; 0 until an epoch is the best
        self.epoch, self.best_f1, self.best_epoch, self.history = 0, -1.0, 0, []
        self.started = time.time()
        require_tensorboard(cfg)
        self.loader = Loaders(t, cfg.seed, cfg.seed * 100003 + job.seed * 1009, self.settings["batch_size"],
                              self.device.type == "cuda")
        self._train_loader = self._val_loader = None

    # -- loaders

    def train_loader(self, epoch: int):
        if self._train_loader is None:
            self._train_loader = self.loader(self.data.train_cache, self.train_rows, self.train_labels,
                                             self.train_tf, train=True, targets=self.train_targets)
        self._train_loader.sampler.set_epoch(epoch)
        return self._train_loader

    def val_loader(self):
        if self._val_loader is None:
            self._val_loader = self.loader(self.data.train_cache, self.val_rows, self.val_labels, self.val_tf)
        return self._val_loader

    def _steps_per_epoch(self) -> int:
        bs = self.settings["batch_size"]
        n = len(self.train_rows) // bs if len(self.train_rows) > bs else 1
        cap = self.cfg.train.max_steps_per_epoch
        steps = min(n, cap) if cap else n
        return max(1, steps // self.cfg.train.accum_steps)

    # -- checkpoints

    def _state(self) -> dict:
        meta = LastMeta(epoch=self.epoch, best_f1=self.best_f1, best_epoch=self.best_epoch, updates=self.updates,
                        history=self.history, rng=rng_state(), config=self.cfg.to_dict(), hash=self.hash,
                        data=self.digest)
        return meta.to_checkpoint({
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.module.state_dict() if self.ema else None,
        })

    def _best_meta(self) -> BestMeta:
        return BestMeta(backbone=dataclasses.asdict(self.bb), config=self.cfg.to_dict(), mean=self.mean, std=self.std,
                        img_size=self.settings["img_size"], epoch=self.epoch, f1=self.best_f1, hash=self.hash,
                        data=self.digest, fold=self.job.fold)

    def _best_state(self) -> dict:
        weights = self.ema.module if self.ema else self.model
        return self._best_meta().to_checkpoint(weights.state_dict())

    def start_over(self, why: str | None = None) -> None:
        """Remove an earlier run's model files of this job, so nothing of it can be resumed or reach the ensemble."""
        if why:
            self.log(f"{self.name}: {why}; starting it over")
        for path in model_files(self.dir):
            path.unlink(missing_ok=True)

    def prepare(self, state: JobState | None = None) -> JobState:
        """Bring the trainer to where its job stands (pipeline.train.state, asked here when not handed): resumed from
        last.pt, ready to predict again from best.pt, or started over. fit() then trains what is left."""
        state = state or job_state(self.cfg, self.job)
        if state.status == FINISHED:  # done again on purpose: where training stood is read only now
            state = dataclasses.replace(state, last=own_last(self.cfg, self.job))
        if state.status == TRAINED:
            self.log(f"{self.name}: trained before; predicting again from best.pt ({state.reason})")
        if state.status in (MISSING, STALE):
            self.start_over(state.reason)
        elif state.last is not None:  # restores the history and RNG too, so a finished run stays bit-identical
            self.resume(in_training=state.status == RESUMABLE)
        else:  # trained (or finished) and its last.pt gone: best.pt and done.json say where training ended
            self.epoch, self.best_epoch = state.done.epochs_run, state.done.best_epoch
        self.state = state
        return state

    def resume(self, in_training: bool = True) -> None:
        """Continue from last.pt, which job_state found to be this job's (in_training: not yet at its end)."""
        state = models.load_checkpoint(last_pt(self.dir))
        meta = LastMeta.from_checkpoint(state, last_pt(self.dir))
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema and state["ema"]:
            self.ema.module.load_state_dict(state["ema"])
        self.epoch, self.best_f1, self.best_epoch = meta.epoch, meta.best_f1, meta.best_epoch
        self.updates, self.history = meta.updates, meta.history
        set_rng_state(meta.rng)
        if in_training and self.best_epoch == self.epoch > 0:  # best.pt may be missing: see _save_epoch
            atomic_torch_save(self._best_state(), best_pt(self.dir))
        best = f" (best F1 {self.best_f1:.4f})" if self.best_f1 >= 0 else ""  # a refit validates nothing
        self.log(f"resumed {self.name} after epoch {self.epoch}{best}")

    # -- epochs

    def train_epoch(self) -> dict:
        t, e = self.cfg.train, self.epoch
        models.set_backbone_trainable(self.model, e >= self.bb.freeze_epochs)
        self.model.train()
        loader = self.train_loader(e)
        mix_on = t.mix.kind != "none" and (t.mix.stop_epoch is None or e < t.mix.stop_epoch)
        gen = np.random.default_rng([self.cfg.seed, self.job.seed, e])
        limit = self.steps_per_epoch * t.accum_steps
        # The running loss and predictions stay on the device: a .item() per step would make the host wait for
        # the GPU every step.
        running, n = torch.zeros((), device=self.device), 0
        preds, truth = [], []
        bar = progress_bar(loader, total=min(len(loader), limit), desc=f"{self.bb.name} {self.tag} e{e + 1}",
                           unit="batch", disable=not self.progress)
        self.opt.zero_grad(set_to_none=True)
        self.lrs_used = []
        for step, (xb, yb, tb) in enumerate(bar):
            if step >= limit:
                break
            x = to_model_input(xb, self.device, *self.norm, t.channels_last)
            y = yb.to(self.device, non_blocking=True)
            target = tb.to(self.device, non_blocking=True)  # (B, 18): one-hot, or soft near an age cut
            if mix_on and gen.random() < t.mix.prob:
                x, target, _ = mix_batch(x, y, t.mix.kind, t.mix.alpha, gen, targets=target)
            with autocast_for(self.device, self.amp):
                logits = self.forward(x)
                loss = self.criterion(logits, target) / t.accum_steps
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            if (step + 1) % t.accum_steps == 0:
                self._optimizer_step()
            running += loss.detach() * t.accum_steps * len(y)
            n += len(y)
            preds.append(class_scores(logits.detach()).argmax(1))
            truth.append(yb)
            if step % 10 == 0 and self.progress:
                f1 = macro_f1(torch.cat(truth), torch.cat(preds).cpu())
                bar.set_postfix(loss=f"{running.item() / n:.3f}", f1=f"{f1:.3f}")
        f1 = macro_f1(torch.cat(truth), torch.cat(preds).cpu()) if n else 0.0
        # The lr the epoch's updates used (their mean), not the one read before its first step: during warm-up
        # that is warmup_lr, which no update of the epoch but the first trained with.
        lr = float(np.mean(self.lrs_used)) if self.lrs_used else self._head_lr()
        return {"lr": lr, "train_loss": running.item() / max(n, 1), "train_f1": f1}

    def _head_lr(self) -> float:
        """The head's lr: the largest, where layer_decay gives lower layers less."""
        return max(g["lr"] for g in self.opt.param_groups)

    def _optimizer_step(self):
        t = self.cfg.train
        self.lrs_used.append(self._head_lr())
        if t.clip_grad:
            if self.scaler:
                self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_grad)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.updates += 1
        self.sched.step_update(self.updates)  # a no-op for plateau, which moves once per epoch
        if self.ema:
            self.ema.update(self.model)

    def validate(self, tta=("orig",)) -> tuple[dict, np.ndarray]:
        model = self.ema.module if self.ema else self.forward
        loader = self.val_loader()
        logits = class_scores(predict_logits(model, loader, self._inference(tta), progress=self._bars("validate")))
        loss = float(self.val_criterion(torch.from_numpy(logits), torch.from_numpy(self.val_labels)))
        return {"val_loss": loss, **{f"val_{k}": v for k, v in scores(self.val_labels, logits.argmax(1)).items()}}, logits

    def fit(self, state: JobState | None = None) -> Done:
        """Train what is left of the job (where `state`, or job_state, says it stands), then predict."""
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.dir)  # left by a kill in the middle of an atomic write
        if state is not None or self.state is None:
            self.prepare(state)
        if self.state.status in (TRAINED, FINISHED) and self.state.last is None:  # e.g. a lost oof.npz, no last.pt
            return self.finish()
        patience = self.cfg.train.patience if self.validates else None  # a refit has no validation to wait on
        stale = self.epoch - self.best_epoch if self.best_epoch else 0
        while self.epoch < self.settings["epochs"] and not (patience is not None and stale >= patience):
            improved = self._epoch()
            stale = 0 if improved else stale + 1
        return self.finish()

    def _epoch(self) -> bool:
        """One epoch, its checkpoints and its line; whether its weights became the model (a fold's best epoch so
        far, a refit's last)."""
        start = time.time()
        row = {"epoch": self.epoch + 1, **self.train_epoch()}
        if self.validates:
            row.update(self.validate()[0])
        row["seconds"] = round(time.time() - start, 2)
        # only plateau moves here, the others per update; a refit has only its training F1 to go by
        self.sched.step(self.epoch + 1, row["val_f1" if self.validates else "train_f1"])
        self.epoch += 1
        improved = row["val_f1"] > self.best_f1 if self.validates else self.epoch == self.settings["epochs"]
        if improved:
            self.best_f1, self.best_epoch = row.get("val_f1", self.best_f1), self.epoch
        self._save_epoch(row, improved)
        self.log(self._epoch_line(row, improved))
        return improved

    def _epoch_line(self, row: dict, improved: bool) -> str:
        head = f"{self.name} epoch {row['epoch']}/{self.settings['epochs']}: train loss {row['train_loss']:.4f}"
        if not self.validates:
            return (f"{head} train F1 {row['train_f1']:.4f} lr {row['lr']:.2e} ({row['seconds']}s)"
                    f"{' * last epoch, saved as the model' if improved else ''}")
        return (f"{head} val loss {row['val_loss']:.4f} val F1 {row['val_f1']:.4f} acc {row['val_acc']:.4f} "
                f"lr {row['lr']:.2e} ({row['seconds']}s){' * new best, saved' if improved else ''}")

    def _save_epoch(self, row: dict, improved: bool) -> None:
        """The epoch's record and checkpoints: last.pt always (what a rerun resumes), then best.pt when it is the
        model. In that order a kill between the two leaves a best.pt one improvement behind, which resume() rebuilds
        from last.pt; the other order would leave a best.pt from an epoch that no record describes."""
        self.history.append(row)
        atomic_torch_save(self._state(), last_pt(self.dir))
        if improved:
            atomic_torch_save(self._best_state(), best_pt(self.dir))
        # six significant digits: readable, and a learning rate of 3e-6 keeps its value
        atomic_write_csv(pd.DataFrame(self.history), metrics_csv(self.dir), float_format="%.6g")
        write_epoch(self.cfg, self.job, row)
        self.tracker.epoch(row)

    def _bars(self, what: str):
        """A bar over a prediction's batches (validation, OOF, test), or None when bars are off for this pair."""
        if not self.progress:
            return None
        return lambda loader: progress_bar(loader, desc=f"{self.bb.name} {self.tag} {what}", unit="batch")

    def finish(self) -> Done:
        """The model (best.pt) predicts the eval photos and, for a fold, its validation photos (OOF), with the
        config's TTA; done.json last."""
        self._mark_predicting()
        best, model = self._best_model()
        if not self.validates:
            self._write_test(model)
            self.log(f"{self.name}: {self.epoch} epochs on {len(self.train_rows)} photos; test predictions "
                     f"{'written' if self.data.eval_cache is not None else 'not needed (no eval set)'}")
            return self._write_done(RefitDone, epochs=self.job.epochs, photos=len(self.train_rows))
        oof = predict_logits(model, self.val_loader(), self._inference(), progress=self._bars("OOF"))
        ids = self.data.folds["image_id"].to_numpy()
        atomic_save_npz(oof_npz(self.dir), image_id=ids[self.val_rows].astype(str), labels=self.val_labels,
                        **prediction_arrays(oof, self.cfg.train))
        self._write_test(model)
        oof_scores = scores(self.val_labels, class_scores(oof).argmax(1))
        self.log(f"{self.name}: predictions written (OOF macro F1 {oof_scores['f1']:.4f} with "
                 f"TTA {'+'.join(self.cfg.tta)}; best epoch {self.best_epoch})")
        return self._write_done(PairDone, fold=self.job.fold, best_epoch=self.best_epoch, val_f1=best.f1,
                                oof_f1_tta=oof_scores["f1"])

    def _mark_predicting(self) -> None:
        """Before predicting again under an earlier done.json, record that none are current (an empty TTA): a kill
        mid-rewrite then leaves a job owed predictions, never a record of files since overwritten."""
        done = self.state.done if self.state is not None else None
        if done is not None and done.tta and done_json(self.dir).is_file():
            atomic_write_text(done_json(self.dir), dataclasses.replace(done, tta=[]).to_json())

    def _best_model(self):
        """best.pt, and the model it holds on this trainer's device."""
        best, weights = models.load_best(best_pt(self.dir))
        model = models.model_from_best(best, weights, self.cfg).to(self.device)
        if self.cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return best, model

    def _inference(self, tta=None) -> Inference:
        """How this pair predicts: with the run's TTA unless `tta` names other views."""
        return Inference(self.device, self.mean, self.std, self.cfg.tta if tta is None else tta,
                         self.cfg.train.channels_last, self.amp)

    def _write_test(self, model) -> None:
        """test.npz: the eval photos' logits, in eval/info.csv order (nothing for a train-only data set)."""
        if self.data.evals is None or self.data.eval_cache is None:
            return
        n = len(self.data.evals)
        loader = self.loader(self.data.eval_cache, np.arange(n), np.zeros(n, np.int64), self.val_tf)
        test = predict_logits(model, loader, self._inference(), progress=self._bars("test"))
        atomic_save_npz(test_npz(self.dir), image_id=self.data.evals["image_id"].to_numpy().astype(str),
                        **prediction_arrays(test, self.cfg.train))

    def _write_done(self, record, **fields):
        """done.json, written last: the identity that makes this model finished, plus `fields` (pipeline.records)."""
        done = record(hash=self.hash, data=self.digest, tta=list(self.cfg.tta), eval=self.data.eval_digest,
                      test=self.data.eval_cache is not None, backbone=self.bb.name, epochs_run=self.epoch,
                      host=socket.gethostname(), device=str(self.device),
                      train_seconds=round(sum(r["seconds"] for r in self.history), 1),
                      provenance=provenance(self.started, self.device), **fields)
        atomic_write_text(done_json(self.dir), done.to_json())
        self.tracker.done(dataclasses.asdict(done), self.dir)
        return done
