"""``python -m benchmark.finetune``: transfer one modality's pretrained encoder to a downstream task.

The protocol of the paper (cromss-method.md §7): a fresh decoder (DeepLabV3+ for DW, FPN for OSM,
PSPNet for DFC2020) around the transferred encoder, frozen or fine-tuned, Adam 5e-4 with a cosine
decay to 1e-5 over 40 epochs then flat, 50 epochs, batch 32, CE + Dice with 255 ignored. Metrics come
from one confusion matrix over the whole test split (no sample is dropped).

Deliberate differences from the original code: "frozen" keeps the encoder in eval mode, so its
BatchNorm statistics stay those of pretraining (``--bn-update`` reproduces the original's updating
statistics); a validation split is used for monitoring when the data has one; evaluation tiles are
padded to a multiple of 32 (reflect) and the prediction cropped back, so 510-px tiles work.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

TASKS: dict[str, dict[str, Any]] = {
    "dw": {"decoder": "deeplabv3plus", "train_split": "dw_train", "test_split": "dw_test", "val_split": None},
    "osm": {"decoder": "fpn", "train_split": "osm_train", "test_split": "osm_test", "val_split": None},
    "dfc2020": {"decoder": "pspnet", "train_split": "dfc2020_val", "test_split": "dfc2020_test", "val_split": None,
                "encoder_depth": 3},
    "truth": {"decoder": "deeplabv3plus", "train_split": "truth_train", "test_split": "truth_test",
              "val_split": "truth_val"},
}
DEFAULTS: dict[str, Any] = {
    "task": "dw", "modality": "s2", "weights": "random", "weights_label": None, "mode": "finetune", "decoder": None,
    "encoder": "resnet50", "encoder_depth": None, "bands": "13B", "epochs": 50, "batch_size": 32, "lr": 5e-4,
    "final_lr": 1e-5, "cosine_epochs": 40, "weight_decay": 1e-8, "crop": 480, "workers": 4, "seed": 42,
    "train_fraction": 1.0, "train_split": None, "val_split": None, "test_split": None, "bn_update": False,
    "accelerator": "auto", "devices": 1, "precision": None, "results": None,
}
RESULT_FIELDS = ("run", "task", "modality", "weights", "mode", "decoder", "encoder", "bands", "seed",
                 "train_fraction", "epochs", "oa", "aa", "miou", "mf1", "seconds")


def cosine_factor(epoch: int, lr: float, final: float, span: int) -> float:
    """LR multiplier: lr(t) = f + ½·(1 + cos(π·t/span))·(lr − f) for t < span, then f; relative to lr."""
    if epoch >= span:
        return final / lr
    return (final + 0.5 * (1 + math.cos(math.pi * epoch / span)) * (lr - final)) / lr


def _module_class():
    import lightning as L
    import segmentation_models_pytorch as smp
    import torch

    from benchmark.metrics import confusion_metric
    from benchmark.models import build_downstream, load_encoder_state

    class FinetuneModule(L.LightningModule):
        """A downstream segmentation model with a transferred (frozen or trainable) encoder."""

        def __init__(self, arch: str, in_channels: int, classes: int, encoder: str, encoder_depth: int,
                     weights: str | None, modality: str, mode: str, bn_update: bool, lr: float, final_lr: float,
                     cosine_epochs: int, weight_decay: float):
            super().__init__()
            self.save_hyperparameters()
            state = load_encoder_state(weights, modality) if weights else None
            self.model = build_downstream(arch, in_channels, classes, state, encoder, encoder_depth)
            self.frozen = mode == "frozen"
            if self.frozen:
                for parameter in self.model.encoder.parameters():
                    parameter.requires_grad = False
            self.ce = torch.nn.CrossEntropyLoss(ignore_index=255)
            self.dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=255)
            self.val_matrix, self.test_matrix = confusion_metric(classes), confusion_metric(classes)
            self.test_result: np.ndarray | None = None

        def train(self, mode: bool = True):
            super().train(mode)
            if self.frozen and not self.hparams.bn_update:
                self.model.encoder.eval()  # frozen means frozen: BatchNorm statistics too
            return self

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            pad_h, pad_w = -h % 32, -w % 32
            if pad_h or pad_w:
                x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
            return self.model(x)[..., :h, :w]

        def training_step(self, batch, _):
            logits = self(batch["image"])
            loss = self.ce(logits, batch["label"]) + self.dice(logits, batch["label"])
            self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(logits))
            return loss

        def validation_step(self, batch, _):
            self.val_matrix.update(self(batch["image"]).argmax(1), batch["label"])

        def on_validation_epoch_end(self):
            from benchmark.metrics import scores_from_confusion

            scores = scores_from_confusion(self.val_matrix.compute())
            self.log_dict({f"v_{k}": scores[k] for k in ("oa", "aa", "miou", "mf1")}, prog_bar=True)
            self.val_matrix.reset()

        def test_step(self, batch, _):
            self.test_matrix.update(self(batch["image"]).argmax(1), batch["label"])

        def on_test_epoch_end(self):
            self.test_result = self.test_matrix.compute().cpu().numpy()
            self.test_matrix.reset()

        def configure_optimizers(self):
            hp = self.hparams
            optimiser = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=hp.lr,
                                         weight_decay=hp.weight_decay)
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda epoch: cosine_factor(epoch, hp.lr, hp.final_lr, hp.cosine_epochs))
            return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    return FinetuneModule


def class_names(task: str) -> list[str]:
    from noldo import catalog

    if task == "osm":
        return [c.name for c in catalog.OSM_CLASSES]
    names = [c.name for c in catalog.DW_CLASSES]
    return names[:8] if task == "dfc2020" else names


def finetune(data: str | Path, config: dict[str, Any], out: str | Path | None = None,
             quiet: bool = False) -> dict[str, Any]:
    """Train and test one configuration; writes the run folder and appends a row to the results CSV."""
    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger

    from benchmark.datamodules import DownstreamDataModule
    from benchmark.metrics import scores_from_confusion
    from benchmark.runs import run_folder, save_config
    from noldo.store import list_splits

    started = time.monotonic()
    task = config.get("task") or DEFAULTS["task"]
    config = {**DEFAULTS, **TASKS[task], **{k: v for k, v in config.items() if v is not None}}
    config["decoder"] = (config["decoder"] or TASKS[config["task"]]["decoder"]).lower()
    config["encoder_depth"] = config["encoder_depth"] or (3 if config["decoder"] == "pspnet" and
                                                          config["task"] == "dfc2020" else 5)
    if config["val_split"] and config["val_split"] not in list_splits(data):
        config["val_split"] = None  # no separate validation split in this store: monitor on the test split
    weights = None if str(config["weights"]).lower() == "random" else str(config["weights"])
    config["weights_label"] = config["weights_label"] or ("random" if weights is None else Path(weights).stem)
    folder = run_folder(out, f"finetune-{config['task']}-{config['modality']}")
    save_config(folder, {**config, "data": str(data)})
    L.seed_everything(config["seed"], workers=True, verbose=False)
    data_module = DownstreamDataModule(
        data, config["task"], config["modality"], config["train_split"], config["test_split"], config["val_split"],
        config["bands"], config["crop"], config["batch_size"], config["workers"], config["train_fraction"],
        seed=config["seed"])
    data_module.setup()
    module = _module_class()(config["decoder"], data_module.train_set.in_channels, data_module.num_classes,
                             config["encoder"], config["encoder_depth"], weights, config["modality"], config["mode"],
                             config["bn_update"], config["lr"], config["final_lr"], config["cosine_epochs"],
                             config["weight_decay"])
    cuda = torch.cuda.is_available() and config["accelerator"] in ("auto", "gpu", "cuda")
    trainer = L.Trainer(default_root_dir=folder, max_epochs=config["epochs"], accelerator=config["accelerator"],
                        devices=config["devices"], precision=config["precision"] or ("bf16-mixed" if cuda else
                                                                                     "32-true"),
                        logger=CSVLogger(folder, name="", version=""), enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=not quiet, log_every_n_steps=1,
                        deterministic=not cuda)
    trainer.fit(module, datamodule=data_module)
    trainer.test(module, datamodule=data_module, verbose=False)
    matrix = module.test_result
    scores = scores_from_confusion(matrix)
    _write_run(folder, config, matrix, scores, module, data_module)
    row = {"run": str(folder), "task": config["task"], "modality": config["modality"],
           "weights": config["weights_label"], "mode": config["mode"], "decoder": config["decoder"],
           "encoder": config["encoder"], "bands": config["bands"] if config["modality"] == "s2" else "VV+VH",
           "seed": config["seed"], "train_fraction": config["train_fraction"], "epochs": config["epochs"],
           **{k: round(scores[k], 6) for k in ("oa", "aa", "miou", "mf1")},
           "seconds": round(time.monotonic() - started, 1)}
    results = Path(config["results"]) if config["results"] else folder.parent / "results.csv"
    append_result(results, row)
    return {**row, "results": str(results)}


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one row to the results CSV (header written once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _write_run(folder: Path, config: dict[str, Any], matrix: np.ndarray, scores: dict[str, Any], module,
               data_module) -> None:
    import pandas as pd

    names = class_names(config["task"])
    np.save(folder / "confusion.npy", matrix)
    pd.DataFrame(matrix, index=names, columns=names).to_csv(folder / "confusion.csv")
    pd.DataFrame({k: scores[k] for k in ("iou", "f1", "precision", "recall")}, index=names).to_csv(
        folder / "per_class.csv", index_label="class")
    (folder / "metrics.json").write_text(json.dumps(
        {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in scores.items()}, indent=2))
    _mosaic(folder / "predictions.png", module, data_module.test_set, config["task"])


def _mosaic(path: Path, module, dataset, task: str, count: int = 4) -> None:
    """Up to ``count`` test tiles: input, reference and prediction in the legend's colours."""
    import torch
    from matplotlib.figure import Figure

    from noldo import catalog
    from noldo.plot import label_colours

    legend = catalog.OSM_CLASSES if task == "osm" else catalog.DW_CLASSES
    shift = 1 if task == "osm" else 0  # OSM training indices are value − 1
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
        panels = (("input", shown), ("reference", label_colours(np.where(label == 255, 255, label + shift)
                                                                 .astype("uint8"), legend)),
                  ("prediction", label_colours((prediction + shift).astype("uint8"), legend)))
        for ax, (title, data) in zip(axes[r], panels, strict=True):
            ax.imshow(data, cmap="gray" if data.ndim == 2 else None, interpolation="nearest")
            ax.set_title(f"{title} · {item['meta']['sample']}" if title == "input" else title, fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=None)
    p.add_argument("--data", required=True, type=Path, help="the store ROOT with the task's splits")
    p.add_argument("--config", type=Path, help="YAML with any of the settings (flags win): "
                                               "benchmark/configs/finetune-paper.yaml, finetune-demo.yaml")
    p.add_argument("--out", type=Path, help="run folder [default: runs/finetune-<task>-<modality>-<time>]")
    p.add_argument("--task", choices=sorted(TASKS), help="dw, osm, dfc2020 or truth (synthetic stores) [dw]")
    p.add_argument("--modality", choices=["s1", "s2"], help="[s2]")
    p.add_argument("--weights", help="a pretraining checkpoint (ours or the released CromSS ones), or random")
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
    p.add_argument("--crop", type=int, help="training crop [480]")
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int, help="[42]")
    p.add_argument("--bn-update", dest="bn_update", action="store_true",
                   help="frozen mode: let the encoder's BatchNorm statistics update, as the original code did")
    p.add_argument("--results", type=Path, help="results CSV to append to [RUN_DIR/../results.csv]")
    p.add_argument("--accelerator")
    p.add_argument("--devices", type=int)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmark.runs import UserError, fail, print_json, resolve_config
    from noldo.errors import NoldoError

    args = parse(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("data", "config", "out")}
    try:
        config = resolve_config(DEFAULTS, args.config, flags)
        summary = finetune(args.data, config, args.out)
    except (UserError, NoldoError, ValueError, FileNotFoundError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    print_json(summary)
    return summary


if __name__ == "__main__":
    main()
