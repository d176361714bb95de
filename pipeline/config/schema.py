"""The config's schema: one dataclass per section, with defaults; what a YAML file may say and of what type.

Every field has its meaning in a comment: on its line, or on the lines right above it. The docs' config reference
is generated from these comments and the defaults (pipeline/docs_ref.py), so a field without one fails the
docs build.

Imports nothing else of maskfold, so every module can take its settings' types from here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from pipeline.config.typed_yaml import ConfigError


@dataclass
class FoldsConfig:
    n_splits: int = 5  # folds of StratifiedGroupKFold: persons kept whole, stratified on gender x age band
    # Persons whose unmasked faces are one face (face-embedding distance under same_face_threshold; needs the
    # `faces` extra, pipeline.faces.identity): group keeps each such group of ids in one fold, warn only names them,
    # "off" (quoted in YAML) skips the check.
    same_face: str = "group"
    # 0.35: on real faces every pair that close was one person twice (see the outside-faces page)
    same_face_threshold: float = 0.35


@dataclass
class DataConfig:
    age_cuts: list[int] = field(default_factory=lambda: [30, 60])  # the two ages where the age bands change
    # People whose age lies this many years below a cut (3: ages 27-29 and 57-59) are left out of training
    # folds only; validation keeps them so out-of-fold F1 stays honest.
    drop_near_cut: int = 0
    # Training folds only: a person this many years below a cut (ages cut-N..cut-1) gets a soft target that puts
    # part of its mass on the band above, more the closer to the cut, always under half (pipeline.data
    # .targets.training_targets). Validation keeps the hard labels.
    soften_near_cut: int = 0
    # The label-fix file (person_id,field,old,new,note), applied when the data is read; null: none.
    label_fixes: str | None = "configs/label_fixes.csv"
    cache_size: list[int] = field(default_factory=lambda: [192, 256])  # width, height of the decoded cache
    crop: str = "none"  # face: crop every photo to its detected face box plus crop_margin; none: the whole photo
    crop_margin: float = 0.6  # crop: face: the margin around the face box, in box widths a side
    # Detectors tried in order until one finds a face (pipeline.faces.boxes): hog, cnn, masked, joined by '+'.
    face_detector: str = "hog+masked"
    use_external: bool = False  # add <run_dir>/external pseudo-persons to every training fold
    external_cap: int = 0  # at most this many external persons in training (0: all)
    use_pseudo: bool = False  # add <run_dir>/pseudo (eval photos labelled by `maskfold pseudo`) to every training fold


@dataclass
class BackboneConfig:
    name: str  # any timm model name, a pretrained tag allowed (resnet18.a1_in1k); a face member's own name
    # timm: a network trained here. face_embedding: dlib's pretrained face-recognition embeddings with a small head
    # per task fitted per fold (pipeline.train.face_job; needs the `faces` extra, skipped with a note without it).
    kind: str = "timm"
    pretrained: bool = False  # start from timm's hub weights (without network: download once, then set weights)
    # A local weights file (timm checkpoint or state dict; the classifier is re-initialised); implies pretrained.
    weights: str | None = None
    img_size: list[int] | None = None  # width, height; falls back to train.img_size
    batch_size: int | None = None  # this backbone's batch size; falls back to train.batch_size
    lr: float | None = None  # this backbone's learning rate; falls back to train.lr
    epochs: int | None = None  # this backbone's epochs; falls back to train.epochs
    drop_rate: float = 0.0  # dropout before the classifier (timm's drop_rate)
    drop_path_rate: float = 0.0  # stochastic depth (timm's drop_path_rate), for the models that have it
    freeze_epochs: int = 0  # train only the classifier head for this many epochs first


@dataclass
class LossTerm:
    name: str = "ce"  # the loss: cross-entropy, focal, or the soft macro-F1 loss
    weight: float = 1.0  # this term's weight in the sum of train.loss
    label_smoothing: float = 0.0  # ce and focal: label smoothing
    gamma: float = 2.0  # focal: the focusing exponent
    alpha: float | None = None  # focal: the weight of the positive class; null: none


@dataclass
class MixConfig:
    # How two photos of a batch are mixed: cutmix, vertical (left and right halves, keeping whole half-faces),
    # elder_half (the second half from a 60+ photo), mixup, or none.
    kind: str = "none"
    prob: float = 0.5  # the share of batches that are mixed
    alpha: float = 1.0  # the Beta(alpha, alpha) that draws the mixing ratio
    stop_epoch: int | None = None  # no mixing from this epoch on (0-based)


@dataclass
class TrainConfig:
    epochs: int = 10  # epochs of each fold pair
    batch_size: int = 64  # photos per batch
    img_size: list[int] = field(default_factory=lambda: [288, 384])  # width, height the model sees
    lr: float = 3e-4  # the peak learning rate
    optimizer: str = "adamw"  # built by timm's create_optimizer_v2
    weight_decay: float = 0.01  # the optimizer's weight decay
    momentum: float = 0.9  # sgd's momentum
    # Parameter groups from timm: no weight decay on norm and bias parameters unless this is false.
    no_decay_norm_bias: bool = True
    layer_decay: float | None = None  # layer-wise lr decay (e.g. 0.75): each layer below the head gets lr * this
    # timm's cosine (warm-up from warmup_lr, down to min_lr), step (step_size, step_gamma), plateau (on validation
    # macro F1: plateau_patience, plateau_factor), or none.
    scheduler: str = "cosine"
    warmup_epochs: float = 1.0  # cosine only: linear warm-up from warmup_lr to the lr
    warmup_lr: float = 0.0  # cosine only: the learning rate the warm-up starts from
    min_lr: float = 0.0  # where cosine ends, and plateau's floor
    step_size: int = 3  # step only: epochs between two lowerings of the lr
    step_gamma: float = 0.5  # step only: the factor of each lowering
    plateau_patience: int = 1  # plateau only: epochs without a better validation F1 before the lr is lowered
    plateau_factor: float = 0.5  # plateau only: the factor of each lowering
    accum_steps: int = 1  # batches whose gradients add up before one optimizer step
    clip_grad: float | None = None  # clip the gradient norm to this; null: no clipping
    amp: str = "bf16"  # autocast precision, used on CUDA only
    channels_last: bool = True  # channels-last memory format (faster convolutions on GPUs)
    compile: bool = False  # torch.compile the model
    ema: float | None = None  # EMA decay of the weights, e.g. 0.999; null: no EMA
    patience: int | None = None  # early stopping: epochs (1 or more) without a better validation F1; null: off
    num_workers: int = 4  # data-loader worker processes (8 or more on a GPU)
    sampler_power: float = 0.0  # 0: natural frequencies, 1: every class drawn equally often
    class_weight_power: float = 0.0  # loss weight per class = frequency ** -power (normalised)
    loss: list[LossTerm] = field(default_factory=lambda: [LossTerm()])  # weighted loss terms, summed
    head: str = "joint"  # joint: one 18-way head | multi: mask, gender and age-band heads (pipeline.model.heads)
    head_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # multi: mask, gender, age loss weights
    # multi only. bands: a 3-way age-band head. years: a distribution over the ages of age_range, trained towards a
    # Gaussian of width age_sigma (years) around the labelled age, plus age_l1_weight * |expected age - age|;
    # its bands are sums over their ages (pipeline.model.years).
    age_head: str = "bands"
    age_range: list[int] = field(default_factory=lambda: [0, 100])  # years only: first and last age of the grid
    age_sigma: float = 3.0  # years only: the width in years of the Gaussian around the labelled age
    age_l1_weight: float = 0.1  # years only: the weight of |expected age - age|
    mix: MixConfig = field(default_factory=MixConfig)  # CutMix and its kin (train.mix.*)
    tensorboard: bool = False  # also write TensorBoard logs (needs pip install 'maskfold[tensorboard]')
    device: str = "auto"  # auto takes CUDA where there is one, else the CPU
    max_steps_per_epoch: int | None = None  # cap on the steps of an epoch, for smoke runs; null: no cap
    # After the folds, train each backbone once more on every person for the median of its folds' best epochs
    # (models/<backbone>/full/); ensemble.test_from chooses whether it predicts the eval set.
    refit: bool = False


@dataclass
class AugmentConfig:
    # The steps for training. Crop sizes (CenterCrop, RandomCrop) of at most 1 are fractions of the cache size.
    train: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)  # the steps for validation, OOF and test predictions


@dataclass
class EnsembleConfig:
    method: str = "soft"  # the equal-weight blend: a soft vote (mean probabilities) or a hard one (majority)
    search_weights: bool = True  # a blend with member weights searched on the simplex
    tune_offsets: bool = True  # each blend also with per-class logit offsets tuned on OOF (rare classes)
    selection: bool = True  # greedy ensemble selection (Caruana et al. 2004) as a blend
    selection_steps: int = 25  # picks (with replacement) of the selection
    stacking: bool = True  # a logistic regression on the members' log-probabilities as a blend
    stacking_c: float = 1.0  # its inverse regularisation strength
    # Per-task weights as a blend (ensemble.task_blend): each task's marginals weighted by members, recomposed into
    # the 18 classes; where members differ by task (a face member sees the person, a network the mask).
    task_weights: bool = True
    nested_splits: int = 2  # person splits of the nested (honest) figure of every fitted blend
    # Use the blend (equal weights, weights, selection, stacking, each +- offsets) with the best honest OOF F1,
    # fitted ones judged by their nested figure; false: the last one enabled, fitted on every OOF photo.
    choose_by_nested: bool = True
    # Finished runs whose backbones are the members (blended into this config's run_dir); empty: this run's own.
    runs: list[str] = field(default_factory=list)
    # Which models predict the eval set: folds (mean of the fold models), refit (the full-data model of
    # train.refit), both (the mean of the two), or auto: both where the run has refits (train.refit is on, or
    # every member's refit is finished), else folds. OOF figures always come from the folds.
    test_from: str = "auto"
    # Move the cuts at which years members' age distributions are summed into bands (each within +-4 years, in
    # half years) to maximise OOF macro F1; a fitted choice, judged by its nested figure.
    tune_age_cut: bool = False


@dataclass
class ExternalConfig:
    source: str = "utkface"  # the importer: UTKFace file names, a FairFace-style table, or a CSV of path, age, gender
    path: str | None = None  # folder (utkface), or table (fairface, csv)
    images_dir: str | None = None  # where a table's file paths point; default: the table's folder
    min_age: int = 60  # faces of this age and older are imported
    max_age: int | None = None  # and of at most this age; null: no limit
    balance_gender: bool = True  # as many women as men
    max_persons: int = 0  # at most this many faces (0: all)
    landmarks: str = "dlib"  # dlib (the faces extra), or file (landmarks.json beside the table, as the demo pool ships)
    templates: str | None = None  # MaskTheFace folder holding masks/masks.cfg; none: procedural masks only
    # How a face crop becomes a 384x512 photo (external_data.persons): blur (the crop inside a blurred enlargement
    # of itself) or portrait (the head on a competition wall).
    framing: str = "blur"


@dataclass
class PseudoConfig:
    # `maskfold pseudo` labels this run's eval photos with another, finished run's ensemble (never this run's own:
    # a run would otherwise learn its own mistakes and be scored on nothing new).
    from_run: str | None = None
    threshold: float = 0.9  # eval photos whose top blended probability is at least this become training photos
    soft: bool = False  # train on the blended probabilities instead of the top class


@dataclass
class TrackingConfig:
    # Where each run, pair and refit is logged besides its own files (pipeline.tracking): none | mlflow | wandb.
    kind: str = "none"
    # mlflow: a folder (holding an SQLite store and the artifacts) or any MLflow tracking URI, default runs/mlruns;
    # wandb: the folder W&B writes its files to, default W&B's own (WANDB_DIR, else the working directory).
    uri: str | None = None
    project: str = "maskfold"  # the MLflow experiment, or the W&B project


@dataclass
class TuneConfig:
    trials: int = 20  # trials counted (finished or pruned) over every process that shares the study
    folds: list[int] = field(default_factory=lambda: [0])  # the folds each trial trains
    backbones: list[str] = field(default_factory=list)  # empty: every backbone of the config
    metric: str = "val_f1"  # the best epoch's figure, mean over the pairs; val_loss is minimised, the others maximised
    # dotted key -> [log, low, high] | [float, low, high] | [int, low, high] | [choice, a, b, ...]
    params: dict = field(default_factory=dict)
    pruner: str = "median"  # stops a trial doing worse than the median of earlier trials at the same epoch; or none
    startup_trials: int = 2  # trials finished before the pruner may stop one
    warmup_epochs: int = 1  # epochs of a trial before the pruner may stop it
    storage: str | None = None  # any Optuna storage URL; default SQLite at <run_dir>/tune/study.db
    study: str | None = None  # the study's name; default the run directory's name


@dataclass
class Config:
    data_dir: str = "data"  # the data folder, holding train/ and eval/
    run_dir: str | None = None  # where the run's files go; null: runs/<config file's name>
    # Decoded photos, shared by every run, fold and backbone: keyed by the photos (real path, size, mtime), the
    # cache size and the crop, so a second experiment on the same photos builds nothing.
    cache_dir: str = "runs/.cache"
    seed: int = 42  # the seed of folds, training and every fitted blend (0 to 2^32-1)
    folds: FoldsConfig = field(default_factory=FoldsConfig)  # fold assignment
    data: DataConfig = field(default_factory=DataConfig)  # how the data is read, cached and extended
    # The ensemble's members, each any timm model with its own settings.
    backbones: list[BackboneConfig] = field(default_factory=lambda: [BackboneConfig(name="efficientnet_b0")])
    train: TrainConfig = field(default_factory=TrainConfig)  # training, for every backbone
    # Albumentations steps, each {name: <albumentations transform>, ...its arguments}, applied to the cached uint8
    # photo; a final resize to the backbone's image size and normalisation are added by the pipeline.
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Test-time views, for OOF and test predictions alike: orig, hflip, crop<percent> (50-99), e.g. crop90.
    tta: list[str] = field(default_factory=lambda: ["orig"])
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)  # the blends and the submission
    external: ExternalConfig = field(default_factory=ExternalConfig)  # `maskfold external`: outside 60+ faces
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)  # `maskfold pseudo`: pseudo-labelled eval photos
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # MLflow or W&B logging
    # `maskfold tune` (the tune stage): an Optuna study over tune.params, each trial training tune.folds of
    # tune.backbones.
    tune: TuneConfig = field(default_factory=TuneConfig)

    def backbone(self, name: str) -> BackboneConfig:
        for b in self.backbones:
            if b.name == name:
                return b
        raise ConfigError(f"backbone '{name}' is not in the config (have: {', '.join(self.backbone_names())})")

    def backbone_names(self) -> list[str]:
        return [b.name for b in self.backbones]

    def networks(self) -> list[BackboneConfig]:
        """The backbones that are networks trained here (timm), not face members (pipeline.train.face_job)."""
        return [b for b in self.backbones if b.kind == "timm"]

    def resolved(self, backbone: BackboneConfig) -> dict:
        """The training settings one backbone actually uses: its own values, else train.*."""
        t = self.train
        return {
            "img_size": list(backbone.img_size or t.img_size),
            "batch_size": backbone.batch_size or t.batch_size,
            "lr": backbone.lr if backbone.lr is not None else t.lr,
            "epochs": backbone.epochs if backbone.epochs is not None else t.epochs,
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def pair_hash(self, backbone: str) -> str:
        """Hash of the settings that change one backbone's weights; a finished pair with the same hash is skipped.

        Paths are left out (the photos, labels and folds they lead to are identified by content, see
        pipeline.layout), and so is what does not change the weights: where and how fast it runs, logging and
        tracking, a tune study's settings, TTA
        (predictions are redone when only TTA changes), the ensemble, and whether a full-data refit follows the
        folds (the refit's own identity adds its epoch count, see pipeline.train.job.refit_identity).
        """
        d = self.to_dict()
        d["backbones"] = [dataclasses.asdict(self.backbone(backbone))]
        if d["backbones"][0]["kind"] == "timm":  # the default kind: networks keep the identity they had before it
            del d["backbones"][0]["kind"]
        for k in NOT_IN_PAIR_HASH:
            section, _, key = k.rpartition(".")
            (d[section] if section else d).pop(key)
        # Settings of a switched-off part change nothing: the outside faces, pseudo-labels, face detectors, heads.
        inactive = {"external": not self.data.use_external, "pseudo": not self.data.use_pseudo,
                    "data.face_detector": self.data.crop == "none" and self.backbone(backbone).kind == "timm",
                    "data.crop_margin": self.data.crop == "none",
                    "train.head_weights": self.train.head == "joint",
                    **{f"train.{k}": self.train.age_head == "bands" for k in YEARS_KEYS}}
        for k, off in inactive.items():
            section, _, key = k.rpartition(".")
            if off:
                (d[section] if section else d).pop(key, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# the keys of the years age head: a bands run's identity never depends on them
YEARS_KEYS = ("age_head", "age_range", "age_sigma", "age_l1_weight")
NOT_IN_PAIR_HASH = ("data_dir", "run_dir", "cache_dir", "tta", "ensemble", "data.label_fixes", "external.path",
                    "folds.same_face", "folds.same_face_threshold",  # folds.csv's digest says which folds
                    "external.images_dir", "external.templates", "train.num_workers", "train.device",
                    "train.tensorboard", "train.refit", "pseudo.from_run", "tracking", "tune")
