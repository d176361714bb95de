"""Whether each backbone's weights can be had (a local file, the hub cache, the hub), checked once before the work
starts. Apart from the model factory so that `check-data` asks without importing torch: timm is imported only for a
backbone that wants pretrained weights."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import BackboneConfig, ConfigError
from pipeline.config.typed_yaml import where_relative


OFFLINE_RECIPE = ("on a machine with internet run `python -c \"import timm; timm.create_model('{name}', pretrained=True)\"`, "
                  "then either copy its ~/.cache/huggingface/hub here and set HF_HUB_OFFLINE=1, or save the weights "
                  "to a file and set `weights: /path/to/file` for this backbone")


def weights_source(backbone: BackboneConfig, timeout: float = 5.0) -> tuple[bool, str]:
    """(can the weights be had, from where or why not), checked once before training instead of failing in every
    pair after a minute of retries: a local file, the hub cache, or the hub over the network."""
    if backbone.weights:
        path = Path(backbone.weights)
        if path.is_dir():
            return False, f"weights file {backbone.weights} is a folder; name the weights file in it"
        ok = path.is_file()
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
    """Every backbone's weights can be had, and a local weights file reads as weights; else one ConfigError naming
    each that cannot and the fix."""
    found, missing = weights_report(backbones)
    problems = [f"{who}: {why}" for who, why in missing]
    problems += [why for b in backbones if b.weights and Path(b.weights).is_file() and (why := weights_problem(b))]
    if problems:
        raise ConfigError("\n".join(problems))
    for line in found:
        log(line)


def weights_problem(backbone: BackboneConfig) -> str | None:
    """Why a backbone's local weights file cannot serve (it does not read as timm reads weights, .safetensors too,
    or its layers do not fit the model), or None: found here, before any work, not in every pair."""
    from timm.models import load_state_dict

    from pipeline.model.models import create

    try:
        load_state_dict(str(backbone.weights))
    except Exception as e:  # noqa: BLE001 - whatever the reader meets, the file is not weights it can use
        return (f"backbone {backbone.name}: weights file {backbone.weights} cannot be read as weights "
                f"({type(e).__name__}: {(str(e).strip().splitlines() or ['no message'])[0][:120]}); give a timm "
                f"checkpoint or state dict of this model, or remove `weights:`")
    try:
        create(backbone)
    except ConfigError as e:
        return str(e)
    return None
