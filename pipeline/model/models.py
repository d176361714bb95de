"""Model factory: any timm model with 18 class scores (through the head of train.head), its own normalisation, and
rebuilding from a checkpoint."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import timm
import torch

from pipeline.config import BackboneConfig, Config, ConfigError, config_from_dict
from pipeline.config.typed_yaml import where_relative
from pipeline.model.heads import HEADS, timm_body
from pipeline.records import BestMeta


def create(backbone: BackboneConfig, allow_pretrained: bool = True, head: str = "joint",
           years: tuple | None = None) -> torch.nn.Module:
    """Build the model. pretrained loads hub weights; `weights` loads a local file (classifier re-initialised).

    head (train.head) sets the classifier's outputs and wraps the timm model so that it returns 18 scores first.
    years: (ages, age cuts) of a years age head (pipeline.model.years), whose age log-probabilities follow them.
    """
    kind = HEADS[head]
    if years is not None:
        from pipeline.model.years import MASK_GENDER, YearsHeads

        kind = dataclasses.replace(kind, outputs=sum(MASK_GENDER) + len(years[0]),
                                   wrap=lambda net: YearsHeads(net, *years))
    kw = {"num_classes": kind.outputs, "drop_rate": backbone.drop_rate}
    if backbone.drop_path_rate:
        kw["drop_path_rate"] = backbone.drop_path_rate
    pretrained = allow_pretrained and (backbone.pretrained or backbone.weights is not None)
    if pretrained and backbone.weights:
        if not Path(backbone.weights).is_file():
            raise ConfigError(f"backbone {backbone.name}: weights file {backbone.weights} not found"
                              f"{where_relative(backbone.weights)}")
        kw["pretrained_cfg_overlay"] = {"file": str(Path(backbone.weights).resolve())}
    try:
        return kind.wrap(timm.create_model(backbone.name, pretrained=pretrained, **kw))
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ConfigError(f"backbone {backbone.name!r} is not a timm model (see timm.list_models())") from None
        if pretrained and backbone.weights:  # read, but not weights of this model (other layers or shapes)
            why = " ".join(line.strip() for line in str(e).strip().splitlines()[:2])[:200]
            raise ConfigError(f"backbone {backbone.name}: weights file {backbone.weights} does not fit the model "
                              f"({why}); give weights of {backbone.name}, or remove `weights:`") from None
        raise
    except OSError as e:  # no network for hub weights
        raise ConfigError(
            f"backbone {backbone.name}: pretrained weights could not be fetched ({e}); download them once and set "
            f"`weights: /path/to/file` for this backbone, or set `pretrained: false`"
        ) from None


def years_spec(cfg) -> tuple | None:
    """(ages, age cuts) of the config's years age head, or None for a bands head: what create() needs."""
    from pipeline.model.years import years_grid

    grid = years_grid(cfg.train)
    return None if grid is None else (grid, list(cfg.data.age_cuts))


def norm_stats(model: torch.nn.Module) -> tuple[list[float], list[float]]:
    """Per-backbone mean and std (timm's data config), so an ensemble never shares the wrong normalisation."""
    cfg = timm.data.resolve_model_data_config(timm_body(model))
    return list(cfg["mean"]), list(cfg["std"])


def set_backbone_trainable(model: torch.nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze everything but the classifier head."""
    head = {id(p) for p in model.get_classifier().parameters()}
    for p in model.parameters():
        if id(p) not in head:
            p.requires_grad_(trainable)


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_best(path: str | Path) -> tuple[BestMeta, dict]:
    """best.pt: what rebuilds its model (RecordError where it is not a best.pt), and the model's weights."""
    ckpt = load_checkpoint(path)
    return BestMeta.from_checkpoint(ckpt, path), ckpt["model"]


def model_from_best(meta: BestMeta, weights: dict, cfg: Config | None = None) -> torch.nn.Module:
    """Rebuild a trained model from the config stored beside its weights (`cfg`: that config, typed already)."""
    cfg = cfg or config_from_dict(meta.config)
    model = create(BackboneConfig(**meta.backbone), allow_pretrained=False, head=cfg.train.head, years=years_spec(cfg))
    model.load_state_dict(weights)
    return model.eval()
