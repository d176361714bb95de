"""`maskfold bench`: where the time goes, measured side by side in one run.

Every figure is the median of several timed rounds after a warm-up. Train-step variants run in child processes
because the allocator setting (GLIBC_TUNABLES) is read only when a process starts.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from pipeline.config import Config
from pipeline.data.images import read_rgb
from pipeline.data.transforms import build_transform
from pipeline.labels import NUM_CLASSES
from pipeline.model.inference import to_model_input
from pipeline.tables.fields import image_file
from pipeline.tools.env import ALLOCATOR


def median_rate(fn, items: int, rounds: int, warmup: int = 1) -> float:
    """Items per second: median over `rounds` timed calls of fn, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return items / statistics.median(times)


def loader_rates(cfg: Config, data, n: int = 256, rounds: int = 3) -> dict:
    """Photos/s of one loader process: decode + resize + augment every time, vs cache read + augment."""
    from pipeline.data.cache import open_cache

    size = tuple(cfg.data.cache_size)
    img_size = tuple(cfg.resolved(cfg.backbones[0])["img_size"])
    tf = build_transform(cfg.augment.train, size, img_size)
    files = [image_file(cfg.data_dir, p) for p in data.folds["path"][:n]]
    cache = open_cache(data.train_cache)
    rows = np.arange(min(n, len(cache)))

    def jpeg():
        for f in files:
            tf(image=read_rgb(f, size))

    def cached():
        for r in rows:
            tf(image=np.asarray(cache[r]))

    return {"loader_jpeg": median_rate(jpeg, len(files), rounds), "loader_cache": median_rate(cached, len(rows), rounds)}


def step_rate(spec: dict) -> dict:
    """Train-step and inference photos/s of one configuration, in this process."""
    import timm

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = timm.create_model(spec["backbone"], pretrained=False, num_classes=NUM_CLASSES).to(device)
    w, h = spec["img_size"]
    b = spec["batch_size"]
    tuned = spec["tuned"]
    fmt = torch.channels_last if spec.get("channels_last", tuned) else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x_host = torch.randint(0, 255, (b, h, w, 3), dtype=torch.uint8)
    if tuned and device.type == "cuda":
        x_host = x_host.pin_memory()
    y = torch.randint(0, NUM_CLASSES, (b,), device=device)
    amp = tuned and device.type == "cuda"

    def to_input():
        x = x_host.to(device, non_blocking=tuned).permute(0, 3, 1, 2).float().div_(255)
        return x.contiguous(memory_format=fmt)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(to_input()), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def infer():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            model(to_input())
        if device.type == "cuda":
            torch.cuda.synchronize()

    steps = spec.get("steps", 3)
    model.train()
    train = median_rate(lambda: [step() for _ in range(steps)], b * steps, spec["rounds"], warmup=1)
    model.eval()
    inference = median_rate(lambda: [infer() for _ in range(steps)], b * steps, spec["rounds"], warmup=1)
    return {"train": train, "inference": inference}


def step_rate_in_child(spec: dict) -> dict:
    """step_rate in a fresh process: naive without the allocator setting, tuned with it."""
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if spec.get("allocator", spec["tuned"]):
        env["GLIBC_TUNABLES"] = ALLOCATOR
    code = "import json,sys; from pipeline.tools.bench import step_rate; print(json.dumps(step_rate(json.loads(sys.argv[1]))))"
    out = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_loop_rate(cfg: Config, data, backbone: str, device: str, steps: int = 12) -> float:
    """Photos/s of real training steps (loader + augment + step) through the Trainer, after one warm-up batch."""
    from pipeline.train.job import fold_job
    from pipeline.train.trainer import Trainer

    trainer = Trainer(cfg, fold_job(cfg, backbone, 0), data, device=device, progress=False, log=lambda m: None)
    trainer.model.train()
    epoch = 0
    it = iter(trainer.train_loader(epoch))
    seen, start = 0, None
    for i in range(steps + 1):
        try:
            xb, yb, tb = next(it)
        except StopIteration:  # a small data set: go on into the next epoch
            epoch += 1
            it = iter(trainer.train_loader(epoch))
            xb, yb, tb = next(it)
        x = to_model_input(xb, trainer.device, *trainer.norm, cfg.train.channels_last)
        loss = trainer.criterion(trainer.forward(x), tb.to(trainer.device))
        loss.backward()
        trainer._optimizer_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            start = time.perf_counter()
        else:
            seen += len(yb)
    return seen / (time.perf_counter() - start)


def run_bench(cfg: Config, backbones: list[str], device: str, rounds: int = 3, log=print) -> dict:
    from pipeline.model.inference import resolve_device
    from pipeline.train.rundata import load_run_data

    dev = resolve_device(device)
    data = load_run_data(cfg, log=log)
    result = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
              "torch": torch.__version__, "config_cache_size": cfg.data.cache_size, "backbones": {}}
    result.update(loader_rates(cfg, data, rounds=rounds))
    result["loader_ratio"] = result["loader_cache"] / result["loader_jpeg"]
    log(f"loader (1 process): JPEG path {result['loader_jpeg']:.0f} photos/s, cache path "
        f"{result['loader_cache']:.0f} photos/s, ratio {result['loader_ratio']:.2f}x")
    workers = max(1, cfg.train.num_workers)
    for name in backbones:
        bb = cfg.backbone(name) if name in cfg.backbone_names() else None
        settings = cfg.resolved(bb or cfg.backbones[0])
        spec = {"backbone": name, "img_size": settings["img_size"], "batch_size": settings["batch_size"],
                "device": str(dev), "rounds": rounds}
        naive = step_rate_in_child({**spec, "tuned": False})
        tuned = step_rate_in_child({**spec, "tuned": True})
        row = {"img_size": settings["img_size"], "batch_size": settings["batch_size"],
               "step_naive": naive["train"], "step_tuned": tuned["train"], "step_ratio": tuned["train"] / naive["train"],
               "inference": tuned["inference"]}
        if bb is not None:
            loop = whole_loop_rate(cfg, data, name, str(dev))
            loader_capacity = result["loader_cache"] * workers
            row.update({"whole_loop": loop, "loader_capacity": loader_capacity,
                        "limited_by": "loader" if loader_capacity < tuned["train"] else "model step"})
        result["backbones"][name] = row
        log(f"{name} at {settings['img_size'][0]}x{settings['img_size'][1]}, batch {settings['batch_size']}: train step "
            f"naive {naive['train']:.1f} photos/s, tuned {tuned['train']:.1f} photos/s "
            f"(ratio {row['step_ratio']:.2f}x); inference {tuned['inference']:.1f} photos/s"
            + (f"; whole loop {row['whole_loop']:.1f} photos/s, limited by the {row['limited_by']}" if bb else ""))
    return result
