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


OFFLINE_RECIPE = ("on a machine with internet run `python -c \"import timm; timm.create_model('{name}', pretrained=True)\"`, "
                  "then either copy its ~/.cache/huggingface/hub here and set HF_HUB_OFFLINE=1, or save the weights "
                  "to a file and set `weights: /path/to/file` for this backbone")


def weights_source(backbone: BackboneConfig, timeout: float = 5.0) -> tuple[bool, str]:
    """(can the weights be had, from where or why not), checked once before training instead of failing in every
    pair after a minute of retries: a local file, the hub cache, or the hub over the network."""
    if backbone.weights:
        ok = Path(backbone.weights).is_file()
        return ok, (f"local file {backbone.weights}" if ok else
                    f"weights file {backbone.weights} not found{where_relative(backbone.weights)}")
    if not backbone.pretrained:
        return True, "random initialisation (pretrained: false)"
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    pcfg = get_pretrained_cfg(backbone.name)
    repo, url = getattr(pcfg, "hf_hub_id", None), getattr(pcfg, "url", "")
    if not repo and not url:
        return False, (f"timm has no pretrained weights for {backbone.name}; set `pretrained: false`, or name a tag "
                       f"that has them (timm.list_pretrained('{backbone.name.split('.')[0]}*'))")
    if not repo:
        return True, f"fetched by timm from {url} (not checked)"
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return True, f"hub cache {cached}"
    import os

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False, f"{repo} is not in the hub cache and HF_HUB_OFFLINE=1; " + OFFLINE_RECIPE.format(name=backbone.name)
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(repo, timeout=timeout)
        return True, f"hub {repo} (downloaded on first use)"
    except Exception as e:  # noqa: BLE001 - any failure to reach the hub means the same to the user
        return False, (f"{repo} is not in the hub cache and the hub cannot be reached ({type(e).__name__}); "
                       + OFFLINE_RECIPE.format(name=backbone.name))


def weights_report(backbones: list[BackboneConfig]) -> tuple[list[str], list[tuple[str, str]]]:
    """(where each available backbone's weights come from, [(backbone, why not)] for the others)."""
    found, missing = [], []
    for b in backbones:
        ok, where = weights_source(b)
        if ok:
            found.append(f"weights of {b.name}: {where}")
        else:
            missing.append((f"backbone {b.name}", where))
    return found, missing


def require_weights(backbones: list[BackboneConfig], log=print) -> None:
    """Every backbone's weights can be had, or one ConfigError naming each that cannot and the offline recipe."""
    found, missing = weights_report(backbones)
    for line in found:
        log(line)
    problems = [f"{who}: {why}" for who, why in missing]
    if problems:
        raise ConfigError("\n".join(problems))

