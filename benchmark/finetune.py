"""``python -m benchmark.finetune``: transfer one modality's pretrained encoder to a downstream task.

The protocol of the paper (docs/method.md, "Transfer protocol"): a fresh decoder (DeepLabV3+ for DW,
FPN for OSM, PSPNet for DFC2020) around the transferred encoder, frozen or fine-tuned, Adam 5e-4 with
a cosine decay to 1e-5 over 40 epochs then flat, 50 epochs, batch 32, CE + Dice with 255 ignored.
Metrics come from one confusion matrix over the whole test split (no sample is dropped).

The encoder comes from ``--weights`` (docs/weights.md): a pretraining checkpoint, a released CromSS
encoder (``cromss:S2_13B_MID``) or a TorchGeo baseline (``torchgeo:SENTINEL2_ALL_MOCO=FILE``); inputs are
encoded as those weights expect (CromSS: ``cromss``; TorchGeo's SSL4EO-S12 MoCo: ``ssl4eo-moco``, S2 ÷ 10000),
and the results row is named after them (``weights_label``, e.g. ``torchgeo-ssl4eo-moco``).

Deliberate differences from the original code: "frozen" keeps the encoder in eval mode, so its
BatchNorm statistics stay those of pretraining (``--bn-update`` reproduces the original's updating
statistics); a validation split is used for monitoring when the data has one; evaluation tiles are
padded to a multiple of 32 (reflect) and the prediction cropped back, so 510-px tiles work.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.runs import store_root
from benchmark.tasks import TASKS, Task, get_task
from noldo.errors import NoldoError

DEFAULTS: dict[str, Any] = {
    "task": "dw", "modality": "s2", "weights": "random", "weights_label": None, "mode": "finetune", "decoder": None,
    "encoder": "resnet50", "encoder_depth": None, "bands": "13B", "epochs": 50, "batch_size": 32, "lr": 5e-4,
    "final_lr": 1e-5, "cosine_epochs": 40, "weight_decay": 1e-8, "crop": "task", "workers": 4, "seed": 42,
    "train_fraction": 1.0, "train_split": None, "val_split": None, "test_split": None, "bn_update": False,
    "accelerator": "auto", "devices": 1, "precision": None, "results": None, "min_clear": None,
    "stats": "ssl4eo",
}
#: The settings a task fills in when they are not given.
TASK_KEYS = ("decoder", "train_split", "test_split", "val_split", "encoder_depth")
RESULT_FIELDS = ("run", "task", "modality", "weights", "mode", "decoder", "encoder", "bands", "seed",
                 "train_fraction", "epochs", "oa", "aa", "miou", "mf1", "seconds")


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` over :data:`DEFAULTS`: None or missing is the default, the task's for :data:`TASK_KEYS`;
    ``crop`` missing or ``"task"`` is the task's, None or 0 whole tiles (stored as None)."""
    config = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None or k == "crop"}}
    task = get_task(config["task"])
    config |= {k: getattr(task, k) for k in TASK_KEYS if config[k] is None}
    crop = task.crop if config["crop"] == "task" else config["crop"]
    if crop is not None and not (isinstance(crop, int) and crop >= 0):
        raise NoldoError(f"crop is a size in pixels, or 0 or null for whole tiles; got {crop!r}")
    return config | {"crop": crop or None, "decoder": config["decoder"].lower()}


def finetune(data: str | Path, config: dict[str, Any], run: str | Path | None = None,
             quiet: bool = False) -> dict[str, Any]:
    """Train and test one configuration (any settings of :data:`DEFAULTS`, resolved by :func:`settings`);
    returns the results row and ``results``, the CSV path.

    The run folder (``run``, default ``runs/finetune-<task>-<modality>-<time>``) receives the config,
    the confusion matrix, per-class and overall metrics and a prediction mosaic; the row is appended
    to ``config["results"]`` (default: ``results.csv`` beside the run folder). ``quiet`` hides the
    progress bar.
    """
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from benchmark.datamodules import DownstreamDataModule
    from benchmark.finetune_module import FinetuneModule
    from benchmark.metrics import scores_from_confusion
    from benchmark.runs import run_folder, save_config, select_device
    from benchmark.weights import resolve
    from noldo.store import list_splits

    started = time.monotonic()
    config = settings(config)
    task = get_task(config["task"])
    if config["val_split"] and config["val_split"] not in list_splits(data):
        config["val_split"] = None  # no separate validation split in this store: monitor on the test split
    config["weights"] = str(config["weights"])  # a path, or a member as its name (cromss:NAME, torchgeo:NAME)
    weights = None if config["weights"].lower() == "random" else config["weights"]
    pretrained = resolve(weights, config["modality"])[0] if weights else None
    meta = pretrained.meta if pretrained else {"label": "random", "normalization": "cromss"}
    config["weights_label"] = config["weights_label"] or meta["label"]
    config["normalization"] = meta["normalization"]  # the input encoding the weights expect
    folder = run_folder(run, f"finetune-{config['task']}-{config['modality']}")
    config["results"] = str(config["results"] or folder.parent / "results.csv")
    save_config(folder, {**config, "data": str(data)})
    L.seed_everything(config["seed"], workers=True, verbose=False)
    data_module = DownstreamDataModule(
        data, config["task"], config["modality"], config["train_split"], config["test_split"], config["val_split"],
        config["bands"], config["crop"], config["batch_size"], config["workers"], config["train_fraction"],
        config["normalization"], seed=config["seed"], min_clear=config["min_clear"], stats=config["stats"])
    data_module.setup()
    height, width = data_module.train_set.group[config["modality"]].shape[-2:]
    if config["crop"] and config["crop"] > min(height, width):  # here, not in a loader worker
        raise NoldoError(f"crop {config['crop']} is larger than the {height}×{width} tiles of {config['train_split']}; "
                         "give a smaller --crop, or --crop 0 for whole tiles")
    module = FinetuneModule(config["decoder"], data_module.train_set.in_channels, data_module.num_classes,
                            config["encoder"], config["encoder_depth"], weights, config["modality"], config["mode"],
                            config["bn_update"], config["lr"], config["final_lr"], config["cosine_epochs"],
                            config["weight_decay"])
    device = select_device(config["accelerator"], config["precision"])
    trainer = L.Trainer(default_root_dir=folder, max_epochs=config["epochs"], accelerator=config["accelerator"],
                        devices=config["devices"], precision=device.precision,
                        logger=CSVLogger(folder, name="", version=""), enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=not quiet, log_every_n_steps=1,
                        deterministic=device.deterministic)
    trainer.fit(module, datamodule=data_module)
    trainer.test(module, datamodule=data_module, verbose=False)
    matrix = module.test_result
    scores = scores_from_confusion(matrix)
    _write_run(folder, task, matrix, scores, module, data_module)
    row = {"run": str(folder), "task": config["task"], "modality": config["modality"],
           "weights": config["weights_label"], "mode": config["mode"], "decoder": config["decoder"],
           "encoder": config["encoder"], "bands": config["bands"] if config["modality"] == "s2" else "VV+VH",
           "seed": config["seed"], "train_fraction": config["train_fraction"], "epochs": config["epochs"],
           **{k: round(scores[k], 6) for k in ("oa", "aa", "miou", "mf1")},
           "seconds": round(time.monotonic() - started, 1)}
    append_result(Path(config["results"]), row)
    return {**row, "results": config["results"]}


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one row to the results CSV (header written once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _write_run(folder: Path, task: Task, matrix: np.ndarray, scores: dict[str, Any], module,
               data_module) -> None:
    import pandas as pd

    names = task.class_names
    np.save(folder / "confusion.npy", matrix)
    pd.DataFrame(matrix, index=names, columns=names).to_csv(folder / "confusion.csv")
    pd.DataFrame({k: scores[k] for k in ("iou", "f1", "precision", "recall")}, index=names).to_csv(
        folder / "per_class.csv", index_label="class")
    (folder / "metrics.json").write_text(json.dumps(
        {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in scores.items()}, indent=2))
    _mosaic(folder / "predictions.png", module, data_module.test_set, task)


def _mosaic(path: Path, module, dataset, task: Task, count: int = 4) -> None:
    """Up to ``count`` test tiles: input, reference and prediction in the legend's colours."""
    import torch
    from matplotlib.figure import Figure

    from noldo.plot import label_colours

    rows = min(count, len(dataset))
    fig = Figure(figsize=(9, 3 * rows))
    axes = fig.subplots(rows, 3, squeeze=False)
    module.eval()
    for r in range(rows):
        item = dataset[r]
        with torch.no_grad():
            prediction = module(item["image"][None].to(module.device)).argmax(1)[0].cpu().numpy()
        image = item["image"].numpy()
        shown = np.clip(image[[3, 2, 1]].transpose(1, 2, 0), 0, 1) if image.shape[0] >= 4 else image[0]
        label = item["label"].numpy()
        panels = (("input", shown), ("reference", label_colours(task.legend_values(label), task.legend)),
                  ("prediction", label_colours(task.legend_values(prediction), task.legend)))
        for ax, (title, data) in zip(axes[r], panels, strict=True):
            ax.imshow(data, cmap="gray" if data.ndim == 2 else None, interpolation="nearest")
            ax.set_title(f"{title} · {item['meta']['sample']}" if title == "input" else title, fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=None)
    p.add_argument("--data", required=True, type=store_root, metavar="ROOT",
                   help="the store ROOT with the task's splits: a directory or an object-store URL")
    p.add_argument("--config", type=Path, help="YAML with any of the settings (flags win): "
                                               "benchmark/configs/finetune-paper.yaml, finetune-demo.yaml")
    p.add_argument("--run", type=Path, metavar="DIR",
                   help="the run folder [default: runs/finetune-<task>-<modality>-<time>]")
    p.add_argument("--out", dest="run", type=Path, help=argparse.SUPPRESS)  # the old name of --run
    p.add_argument("--task", choices=sorted(TASKS), help="dw, osm, dfc2020 or truth (synthetic stores) [dw]")
    p.add_argument("--modality", choices=["s1", "s2"], help="[s2]")
    p.add_argument("--weights", metavar="WEIGHTS",
                   help="random; a pretraining checkpoint (ours or a released CromSS one); or pretrained weights by "
                        "name, FAMILY:NAME[=FILE]: cromss:S2_13B_MID … (the released encoders, fetched by noldo "
                        "download without FILE), torchgeo:SENTINEL2_ALL_MOCO or torchgeo:SENTINEL1_GRD_MOCO "
                        "(TorchGeo's SSL4EO-S12 MoCo ResNet-50s, with their input normalisation); docs/weights.md "
                        "[random]")
    p.add_argument("--weights-label", dest="weights_label", help="the row name in the results table")
    p.add_argument("--mode", choices=["frozen", "finetune"], help="[finetune]")
    p.add_argument("--decoder", choices=["deeplabv3plus", "fpn", "pspnet", "unet"],
                   help="[the paper's per task: DW deeplabv3plus, OSM fpn, DFC2020 pspnet]")
    p.add_argument("--encoder", help="smp encoder name, as in pretraining [resnet50]")
    p.add_argument("--encoder-depth", dest="encoder_depth", type=int, help="[5; 3 for DFC2020's PSPNet]")
    p.add_argument("--bands", choices=["13B", "9B"], help="S2 bands [13B]")
    p.add_argument("--train-fraction", dest="train_fraction", type=float, help="share of training tiles [1]")
    p.add_argument("--train-split", dest="train_split")
    p.add_argument("--val-split", dest="val_split")
    p.add_argument("--test-split", dest="test_split")
    p.add_argument("--epochs", type=int, help="[50]")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="[32]")
    p.add_argument("--lr", type=float, help="[5e-4]")
    p.add_argument("--crop", type=int, metavar="PX", help="training crop, 0: whole tiles (as `crop: null` in a "
                                                           "config) [the task's: DW 496, OSM 480, DFC2020 0]")
    p.add_argument("--stats", choices=["ssl4eo", "store"],
                   help="band mean/std of the encoding: the paper's table, or each split's own (noldo stats) [ssl4eo]")
    p.add_argument("--min-clear", dest="min_clear", type=int, metavar="SCORE",
                   help="ignore labels whose cloud score (s2_cloud, 0–100) is under SCORE [off; 60 is clear sky]")
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int, help="[42]")
    p.add_argument("--bn-update", dest="bn_update", action="store_true",
                   help="frozen mode: let the encoder's BatchNorm statistics update, as the original code did")
    p.add_argument("--results", type=Path, help="results CSV to append to [RUN/../results.csv]")
    p.add_argument("--accelerator")
    p.add_argument("--devices", type=int)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmark.runs import command, config_from_args, print_json

    args = parse(argv)
    return command(lambda: finetune(args.data, config_from_args(DEFAULTS, args, "data", "run"), args.run),
                   print_json)


if __name__ == "__main__":
    main()
