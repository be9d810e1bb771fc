"""The check to run the day a CUDA GPU is at hand: the paper model's training step in our recipe against the
original's, the loader against the step, and peak memory, in one JSON (README "Performance"); under 5 minutes.

    python -m benchmark.perf.gpu_check [--data ROOT] [--batch 128] [--size 256] [--steps 20] [--compile]
                                       [--workers 12] [--json gpu_check.json] [--tiny]

Recipes (docs/method.md, "Precision"): ``ours``, bf16 autocast on channels-last tensors (``ours+compile``: the
network also through torch.compile); ``original``, fp16 autocast with a GradScaler on contiguous tensors. Each
times ``--steps`` optimiser steps of the two-branch ResNet-50 U-Net with the full CromSS loss after warm-up
steps, each step as training takes it: a raw batch of ``loader: device`` moved to the device and finished by
:func:`benchmark.device_batch.device_batch`. The loader's samples/s with ``--workers`` (``loader: device`` and
``loader: item`` with ``prior: batch``, best epoch) are set against our step's: under 1 the GPU waits for
data. Peak memory: CUDA's max_memory_allocated per recipe; on the CPU the process's peak RSS so far. A recipe
the device cannot run is recorded with the reason. ``--tiny`` runs a ResNet-18 at 32 px on a few 48-px
samples in one thread, as the tests do on the CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.cromss import cromss_loss
from benchmark.cromss.module import CromSSModule
from benchmark.data import NoLPretrainDataset, loader
from benchmark.device_batch import device_batch
from benchmark.perf.common import report
from benchmark.perf.loader import rates

#: Settings of the real check and of ``--tiny``; flags override either.
FULL = {"batch": 128, "size": 256, "steps": 20, "warmup": 5, "workers": 12, "samples": 64, "tile": 264,
        "encoder": "resnet50", "epochs": 2}
TINY = {"batch": 2, "size": 32, "steps": 1, "warmup": 1, "workers": 0, "samples": 8, "tile": 48,
        "encoder": "resnet18", "epochs": 1}
#: name → (autocast dtype, GradScaler, channels-last, torch.compile)
RECIPES = {"ours": (torch.bfloat16, False, True, False), "ours+compile": (torch.bfloat16, False, True, True),
           "original": (torch.float16, True, False, False)}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_recipe(name: str, raw: dict[str, Any], device: torch.device, settings: dict[str, Any]) -> dict[str, Any]:
    """Samples/s and steps/s of one recipe over ``steps`` steps after ``warmup`` steps, and its peak memory."""
    dtype, scaled, channels_last, compiled = RECIPES[name]
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return {"skipped": f"{torch.cuda.get_device_name(device)} has no bf16"}
    torch.manual_seed(0)
    module = CromSSModule(encoder=settings["encoder"], channels_last=channels_last).to(device)
    if compiled:
        module.net = torch.compile(module.net)
    optimiser = torch.optim.Adam(module.parameters(), lr=module.hparams.lr)
    scaler = torch.amp.GradScaler(device.type) if scaled else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> float:
        batch = device_batch({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in raw.items()})
        with torch.autocast(device.type, dtype=dtype):
            logits = module(batch)
            loss = cromss_loss(*logits, batch["label"], batch["prior"], module.hparams.T, module.config)["total"]
        optimiser.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimiser.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        return loss.item()  # waits for the device

    try:
        started = time.perf_counter()
        for _ in range(settings["warmup"]):
            step()
        warmup = time.perf_counter() - started
        started = time.perf_counter()
        losses = [step() for _ in range(settings["steps"])]
        seconds = time.perf_counter() - started
    except RuntimeError as exc:  # out of memory, no compiler for torch.compile, …
        return {"skipped": str(exc).strip().splitlines()[0]}
    steps = settings["steps"] / seconds
    return {"autocast": str(dtype).removeprefix("torch."), "grad_scaler": scaled, "channels_last": channels_last,
            "compile": compiled, "steps_per_s": steps, "samples_per_s": steps * settings["batch"],
            "warmup_s": warmup, "peak_memory_mb": peak_memory_mb(device),
            "loss_finite": all(map(math.isfinite, losses))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a store with a 4-season nol split [build a synthetic demo store]")
    for key, value in FULL.items():
        parser.add_argument(f"--{key}", type=type(value), help=f"[{value}; --tiny: {TINY[key]}]")
    parser.add_argument("--compile", action="store_true", help="also time our recipe with torch.compile")
    parser.add_argument("--tiny", action="store_true", help="a few seconds on the CPU, for the tests")
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args(argv)
    settings = {k: v if (v := getattr(args, k)) is not None else (TINY if args.tiny else FULL)[k] for k in FULL}
    started = time.perf_counter()
    if args.tiny:
        torch.set_num_threads(1)  # the tests share the CPU: more threads than free cores only wait for each other
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        store = args.data
        if store is None:
            from noldo.build import BuildSpec, build

            store = Path(tmp) / "demo"
            build(BuildSpec("demo", "synthetic", samples=settings["samples"], tile_size=settings["tile"]), store,
                  workers=os.cpu_count())
        common = {"crop": settings["size"], "seed": 0, "prior": "batch"}
        sets = {"device": NoLPretrainDataset(store, loader="device", **common),
                "item": NoLPretrainDataset(store, **common)}
        batches = max(2 * settings["workers"], 2)  # every worker busy
        indices = [i % len(sets["device"]) for i in range(batches * settings["batch"])]
        raw = next(iter(loader(sets["device"], settings["batch"], shuffle=True, indices=indices)))
        recipes = {name: time_recipe(name, raw, device, settings)
                   for name in RECIPES if args.compile or name != "ours+compile"}
        loaders = rates(sets, settings["workers"], settings["epochs"], settings["batch"], indices)
    ours = recipes["ours"].get("samples_per_s")

    def versus(rate: float) -> str:
        return f"{rate / ours:.2f}×" if ours else ""

    rows = [(name, "skipped: " + r["skipped"], "", "") if "skipped" in r else
            (name, f"{r['samples_per_s']:.1f}", f"{r['peak_memory_mb']:.0f}", versus(r["samples_per_s"]))
            for name, r in recipes.items()]
    rows += [(f"loader: {name}, {settings['workers']} workers", f"{rate:.1f}", "", versus(rate))
             for name, rate in loaders.items()]
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "settings": settings,
              "peak_memory": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS",
              "recipes": recipes, "loader_samples_per_s": loaders,
              "loader_vs_step": {name: rate / ours for name, rate in loaders.items()} if ours else None,
              "seconds": time.perf_counter() - started}
    report("gpu_check", ("", "samples/s", "peak memory MB", "vs our step"), rows, args.json, **result)
    return result


if __name__ == "__main__":
    main()
