"""Training one (backbone, fold) pair: epochs of train + validate, checkpoints, resume, OOF and test predictions.

Layout: <run_dir>/models/<backbone>/fold<k>/{best.pt, last.pt, metrics.csv, oof.npz, test.npz, done.json}.
last.pt holds everything a rerun needs to continue after a kill; every write is atomic, so a kill at any moment
leaves either the previous file or the new one.
"""
from __future__ import annotations

import dataclasses
import json
import socket
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from pipeline.config import Config, ConfigError, LossTerm
from pipeline.data.datasets import CachedPhotos
from pipeline.data.mixing import mix_batch
from pipeline.data.pseudo import with_soft_labels
from pipeline.data.samplers import EpochSampler
from pipeline.data.targets import training_rows, training_targets
from pipeline.data.transforms import build_transform
from pipeline.io import (
    atomic_save_npz,
    atomic_torch_save,
    atomic_write_csv,
    atomic_write_text,
    remove_stale_temporaries,
)
from pipeline.labels import NUM_CLASSES
from pipeline.layout import PAIR_FILES, pair_dir, read_done, tensorboard_dir
from pipeline.model import models
from pipeline.model.criterion import build_criterion
from pipeline.model.heads import timm_body
from pipeline.model.inference import autocast_for, norm_tensors, predict_logits, resolve_device, to_model_input
from pipeline.model.losses import build_loss
from pipeline.model.metrics import macro_f1, scores
from pipeline.model.optim import build_optimizer, build_scheduler
from pipeline.model.years import class_scores, prediction_arrays, with_age_targets
from pipeline.progress import bar as progress_bar
from pipeline.tracking import pair_tracker
from pipeline.train.provenance import provenance
from pipeline.train.rundata import RunData
from pipeline.train.state import rng_state, seed_everything, set_rng_state


def require_tensorboard(cfg: Config) -> None:
    """With train.tensorboard on, fail before any epoch (not after the first) when its extra is missing."""
    if not cfg.train.tensorboard:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("train.tensorboard is on but tensorboard is not installed: "
                          "pip install 'maskfold[tensorboard]', or set train.tensorboard: false") from None


class Trainer:
    """One (backbone, fold) pair. pipeline.train.refit.RefitTrainer overrides the hooks below (identity, output_dir,
    split, planned_epochs) to train a backbone on every photo instead."""

    def __init__(self, cfg: Config, backbone: str, fold: int, data: RunData, device=None, progress=True, log=print):
        self.cfg, self.fold, self.log, self.progress = cfg, fold, log, progress
        self.bb = cfg.backbone(backbone)
        # its name in messages, in progress bars and in tensorboard_dir
        self.name, self.tag, self.board = f"{self.bb.name} fold {fold}", f"f{fold}", fold
        self.settings = {**cfg.resolved(self.bb), "epochs": self.planned_epochs()}
        self.hash = self.identity()
        self.digest = data.digest
        self.dir = self.output_dir()
        self.tracker = pair_tracker(cfg, self.bb.name, self.dir.name, self.hash, log)  # epochs and done, as written
        self.data = data
        self.device = resolve_device(device or cfg.train.device)
        t = cfg.train
        self.amp = t.amp if self.device.type == "cuda" else "none"
        seed_everything(cfg.seed * 1000 + fold)

        folds = data.folds
        self.train_rows, self.val_rows = self.split(folds)
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
        self.epoch, self.best_f1, self.best_epoch, self.history = 0, -1.0, -1, []
        self.started = time.time()
        require_tensorboard(cfg)
        self._train_loader = self._val_loader = None

    # -- what a subclass may change

    def planned_epochs(self) -> int:
        return self.cfg.resolved(self.bb)["epochs"]

    def identity(self) -> str:
        """The hash that done.json, best.pt and last.pt must carry to count as this pair's."""
        return self.cfg.pair_hash(self.bb.name)

    def output_dir(self):
        return pair_dir(self.cfg.run_dir, self.bb.name, self.fold)

    def split(self, folds: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, validation rows): the fold is validated; train-only rows (fold -1) are always trained on."""
        in_val = (folds["fold"] == self.fold).to_numpy()
        if not in_val.any():
            raise ValueError(f"fold {self.fold} is empty; folds.n_splits is {self.cfg.folds.n_splits}")
        return np.flatnonzero(~in_val & training_rows(folds, self.cfg.data)), np.flatnonzero(in_val)

    # -- loaders

    def _loader(self, rows, labels, transform, train: bool, cache=None, targets=None):
        """Built once per pair: workers stay alive across epochs; the sampler carries the epoch's seed."""
        workers = self.cfg.train.num_workers
        ds = CachedPhotos(cache or self.data.train_cache, rows, labels, transform, targets)
        sampler = EpochSampler(labels, self.cfg.train.sampler_power,
                               self.cfg.seed * 100003 + self.fold * 1009) if train else None
        return DataLoader(
            ds, batch_size=self.settings["batch_size"], sampler=sampler, num_workers=workers,
            pin_memory=self.device.type == "cuda", drop_last=train and len(rows) > self.settings["batch_size"],
            persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
            generator=torch.Generator().manual_seed(self.cfg.seed),  # workers' base seed: not the global RNG
        )

    def train_loader(self, epoch: int):
        if self._train_loader is None:
            self._train_loader = self._loader(self.train_rows, self.train_labels, self.train_tf, True,
                                              targets=self.train_targets)
        self._train_loader.sampler.set_epoch(epoch)
        return self._train_loader

    def val_loader(self):
        if self._val_loader is None:
            self._val_loader = self._loader(self.val_rows, self.val_labels, self.val_tf, False)
        return self._val_loader

    def _steps_per_epoch(self) -> int:
        bs = self.settings["batch_size"]
        n = len(self.train_rows) // bs if len(self.train_rows) > bs else 1
        cap = self.cfg.train.max_steps_per_epoch
        steps = min(n, cap) if cap else n
        return max(1, steps // self.cfg.train.accum_steps)

    # -- checkpoints

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.module.state_dict() if self.ema else None,
            "updates": self.updates, "epoch": self.epoch, "best_f1": self.best_f1, "best_epoch": self.best_epoch,
            "history": self.history,
            "rng": rng_state(), "config": self.cfg.to_dict(), "hash": self.hash, "data": self.digest,
        }

    def _best_state(self) -> dict:
        weights = self.ema.module if self.ema else self.model
        return {
            "model": weights.state_dict(), "backbone": dataclasses.asdict(self.bb), "config": self.cfg.to_dict(),
            "mean": self.mean, "std": self.std, "img_size": self.settings["img_size"], "epoch": self.epoch,
            "f1": self.best_f1, "hash": self.hash, "data": self.digest, "fold": self.fold,
        }

    def start_over(self, why: str | None = None) -> None:
        """Remove every file of an earlier run of this pair, so nothing of it can be resumed or reach the ensemble."""
        if why:
            self.log(f"{self.name}: {why}; starting it over")
        for name in PAIR_FILES:
            (self.dir / name).unlink(missing_ok=True)

    def read_done(self) -> dict | None:
        return read_done(self.cfg.run_dir, self.bb.name, self.fold)

    def trained_before(self) -> bool:
        """Training finished under these settings and data, and best.pt is whole: only predictions are owed."""
        done = self.read_done()
        if not done or done.get("hash") != self.hash or done.get("data") != self.digest:
            return False
        try:
            best = models.load_checkpoint(self.dir / "best.pt")
        except Exception:  # noqa: BLE001 - missing or damaged: retrain
            return False
        if best.get("hash") != self.hash:
            return False
        self.epoch, self.best_epoch, self.best_f1 = done["epochs_run"], done["best_epoch"] - 1, best["f1"]
        return True

    def try_resume(self) -> bool:
        """Continue from last.pt when it was written for the same settings and data and its best.pt is whole."""
        last = self.dir / "last.pt"
        if not last.is_file():
            self.start_over()
            return False
        try:
            state = models.load_checkpoint(last)
        except Exception as e:  # noqa: BLE001 - a damaged file is not a reason to stop, only to retrain
            self.start_over(f"{last} cannot be read ({type(e).__name__})")
            return False
        if state.get("hash") != self.hash or state.get("data") != self.digest:
            self.start_over(f"{last} was written under other settings or data")
            return False
        if state["best_epoch"] >= 0:
            best = self.dir / "best.pt"
            try:
                ok = best.is_file() and models.load_checkpoint(best).get("hash") == self.hash
            except Exception:  # noqa: BLE001
                ok = False
            if not ok:
                self.start_over(f"{best} is missing or from another run")
                return False
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema and state["ema"]:
            self.ema.module.load_state_dict(state["ema"])
        self.epoch, self.best_f1, self.best_epoch = state["epoch"], state["best_f1"], state["best_epoch"]
        self.updates, self.history = state["updates"], state["history"]
        set_rng_state(state["rng"])
        best = f" (best F1 {self.best_f1:.4f})" if self.best_f1 >= 0 else ""  # a refit validates nothing
        self.log(f"resumed {self.name} after epoch {self.epoch}{best}")
        return True

    # -- epochs

    def train_epoch(self) -> dict:
        t, e = self.cfg.train, self.epoch
        models.set_backbone_trainable(self.model, e >= self.bb.freeze_epochs)
        self.model.train()
        loader = self.train_loader(e)
        mix_on = t.mix.kind != "none" and (t.mix.stop_epoch is None or e < t.mix.stop_epoch)
        gen = np.random.default_rng([self.cfg.seed, self.fold, e])
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
        logits = class_scores(predict_logits(model, loader, self.device, self.mean, self.std, tta,
                                             self.cfg.train.channels_last, self.amp, progress=self._bars("validate")))
        loss = float(self.val_criterion(torch.from_numpy(logits), torch.from_numpy(self.val_labels)))
        return {"val_loss": loss, **{f"val_{k}": v for k, v in scores(self.val_labels, logits.argmax(1)).items()}}, logits

    def fit(self) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.dir)  # left by a kill in the middle of an atomic write
        if not (self.dir / "last.pt").is_file() and self.trained_before():  # e.g. a lost oof.npz, last.pt deleted
            self.log(f"{self.bb.name} fold {self.fold}: trained before; predicting again from best.pt")
            return self.finish()
        self.try_resume()
        t = self.cfg.train
        epochs = self.settings["epochs"]
        stale = self.epoch - 1 - self.best_epoch if self.best_epoch >= 0 else 0
        while self.epoch < epochs and not (t.patience and stale >= t.patience):
            start = time.time()
            row = {"epoch": self.epoch + 1, **self.train_epoch()}
            val, _ = self.validate()
            row.update(val)
            row["seconds"] = round(time.time() - start, 2)
            self.sched.step(self.epoch + 1, val["val_f1"])  # only plateau moves here; the others per update
            improved = val["val_f1"] > self.best_f1
            if improved:
                self.best_f1, self.best_epoch = val["val_f1"], self.epoch
            self.epoch += 1
            self._save_epoch(row, improved)
            stale = 0 if improved else stale + 1
            self.log(f"{self.bb.name} fold {self.fold} epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} "
                     f"val loss {val['val_loss']:.4f} val F1 {val['val_f1']:.4f} acc {val['val_acc']:.4f} "
                     f"lr {row['lr']:.2e} ({row['seconds']}s){' * new best, saved' if improved else ''}")
        return self.finish()

    def _save_epoch(self, row: dict, improved: bool) -> None:
        """The epoch's record and checkpoints: best.pt when it is the model, last.pt always (what a rerun resumes)."""
        self.history.append(row)
        if improved:
            atomic_torch_save(self._best_state(), self.dir / "best.pt")
        atomic_torch_save(self._state(), self.dir / "last.pt")
        # six significant digits: readable, and a learning rate of 3e-6 keeps its value
        atomic_write_csv(pd.DataFrame(self.history), self.dir / "metrics.csv", float_format="%.6g")
        self._tensorboard(row)
        self.tracker.epoch(row)

    def _bars(self, what: str):
        """A bar over a prediction's batches (validation, OOF, test), or None when bars are off for this pair."""
        if not self.progress:
            return None
        return lambda loader: progress_bar(loader, desc=f"{self.bb.name} {self.tag} {what}", unit="batch")

    def _tensorboard(self, row: dict) -> None:
        if not self.cfg.train.tensorboard:
            return
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(tensorboard_dir(self.cfg.run_dir, self.bb.name, self.board))) as w:
            for k, v in row.items():
                if k != "epoch":
                    w.add_scalar(k, v, row["epoch"])

    def finish(self) -> dict:
        """best.pt predicts the fold's validation photos (OOF) and the eval photos, with the config's TTA."""
        best, model = self._best_model()
        oof = predict_logits(model, self.val_loader(), **self._predict_kw(), progress=self._bars("OOF"))
        ids = self.data.folds["image_id"].to_numpy()
        atomic_save_npz(self.dir / "oof.npz", image_id=ids[self.val_rows].astype(str), labels=self.val_labels,
                        **prediction_arrays(oof, self.cfg.train))
        oof = class_scores(oof)
        self._write_test(model)
        oof_scores = scores(self.val_labels, oof.argmax(1))
        self.log(f"{self.bb.name} fold {self.fold}: predictions written (OOF macro F1 {oof_scores['f1']:.4f} with "
                 f"TTA {'+'.join(self.cfg.tta)}; best epoch {self.best_epoch + 1})")
        return self._write_done(fold=self.fold, best_epoch=self.best_epoch + 1, val_f1=best["f1"],
                                oof_f1_tta=oof_scores["f1"], epochs_run=self.epoch)

    def _best_model(self):
        """best.pt, and the model it holds on this trainer's device."""
        best = models.load_checkpoint(self.dir / "best.pt")
        model = models.model_from_checkpoint(best).to(self.device)
        if self.cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return best, model

    def _predict_kw(self) -> dict:
        return dict(device=self.device, mean=self.mean, std=self.std, tta=self.cfg.tta,
                    channels_last=self.cfg.train.channels_last, amp=self.amp)

    def _write_test(self, model) -> None:
        """test.npz: the eval photos' logits, in eval/info.csv order (nothing for a train-only data set)."""
        if self.data.evals is None or self.data.eval_cache is None:
            return
        n = len(self.data.evals)
        loader = self._loader(np.arange(n), np.zeros(n, np.int64), self.val_tf, False, cache=self.data.eval_cache)
        test = predict_logits(model, loader, **self._predict_kw(), progress=self._bars("test"))
        atomic_save_npz(self.dir / "test.npz", image_id=self.data.evals["image_id"].to_numpy().astype(str),
                        **prediction_arrays(test, self.cfg.train))

    def _write_done(self, **fields) -> dict:
        """done.json, written last: the identity that makes this model finished (pipeline.layout), plus `fields`."""
        info = {"hash": self.hash, "data": self.digest, "tta": list(self.cfg.tta), "eval": self.data.eval_digest,
                "test": self.data.eval_cache is not None, "backbone": self.bb.name, **fields,
                "host": socket.gethostname(), "device": str(self.device),
                "train_seconds": round(sum(r.get("seconds", 0) for r in self.history), 1),
                "provenance": provenance(self.started, self.device)}
        atomic_write_text(self.dir / "done.json", json.dumps(info, indent=1))
        self.tracker.done(info, self.dir)
        return info
