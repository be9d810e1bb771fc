"""CromSS pretraining as a function: :func:`train` with a config resolved over :data:`DEFAULTS`.

The settings and schedule are those of docs/method.md ("Schedules"); ``python -m benchmark.cromss``
is the command line around it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from benchmark.cromss.module import CromSSModule
from benchmark.cromss.truth_metrics import PANELS
from benchmark.datamodules import NoLDataModule
from benchmark.runs import plot_curves, run_folder, save_config, select_device
from noldo.errors import NoldoError

#: Every setting of a pretraining run, with the paper's values.
DEFAULTS: dict[str, Any] = {
    "split": "nol", "fusion": "mid", "bands": "13B", "encoder": "resnet50", "epochs": 200, "batch_size": 128,
    "lr": 5e-3, "weight_decay": 1e-8, "lr_factor": 0.5, "lr_patience": 30, "T": 80, "prop": 0.5, "alpha": 0.15,
    "beta": 0.05, "lambda_con": 1.0, "selection": True, "smoothing": True, "consistency": True,
    "single_modality": None, "crop": 256, "workers": 4, "val_fraction": 0.01, "checkpoint_every": 10, "seed": 42,
    "rotation": "90", "normalization": "cromss", "prior": "cpu", "accelerator": "auto", "devices": 1,
    "num_nodes": 1, "precision": None, "max_steps": -1, "min_clear": None, "loader": "item", "stats": "ssl4eo",
}
#: The settings that are hyper-parameters of :class:`CromSSModule`.
MODULE_KEYS = ("fusion", "bands", "encoder", "lr", "weight_decay", "lr_factor", "lr_patience", "T", "prop", "alpha",
               "beta", "lambda_con", "selection", "smoothing", "consistency", "single_modality")


def train(data: str | Path, config: dict[str, Any], run: str | Path | None = None, resume: str | None = None,
          quiet: bool = False) -> dict[str, Any]:
    """Pretrain on the store ``data`` with a resolved ``config``; returns the run summary.

    The run folder (``run``, default ``runs/cromss-<time>``) receives the config, Lightning's CSV and
    TensorBoard logs, checkpoints every ``checkpoint_every`` epochs plus ``last.ckpt``, ``loss.png`` and, when
    the store has a truth, ``truth.png`` (accuracy against it, memorisation, kept pixels; see
    benchmark/cromss/truth_metrics.py).
    ``resume`` is ``"last"`` (the run's ``last.ckpt``) or a checkpoint path. ``config["precision"]`` is
    filled in with the precision used. ``quiet`` hides the progress bar.
    """
    logging.getLogger("lightning").setLevel(logging.WARNING)
    folder = run_folder(run, "cromss")
    L.seed_everything(config["seed"], workers=True, verbose=False)
    data_module = NoLDataModule(data, config["split"], config["bands"], config["crop"], config["batch_size"],
                                config["workers"], config["val_fraction"], config["normalization"],
                                config["rotation"], config["prior"], config["seed"], config["min_clear"],
                                config["loader"], config["stats"])
    data_module.setup()
    if len(data_module.train_ids) < config["batch_size"]:
        raise NoldoError(f"{data} has {len(data_module.train_ids)} training samples in {config['split']}, fewer "
                         f"than one batch ({config['batch_size']}); lower --batch-size or build more samples")
    device = select_device(config["accelerator"], config["precision"])
    config["precision"] = device.precision
    save_config(folder, {**config, "data": str(data)})
    module = CromSSModule(**{k: config[k] for k in MODULE_KEYS}, channels_last=device.cuda)
    distributed = config["devices"] > 1 or config["num_nodes"] > 1
    trainer = L.Trainer(
        default_root_dir=folder, max_epochs=config["epochs"], max_steps=config["max_steps"],
        accelerator=config["accelerator"], devices=config["devices"], num_nodes=config["num_nodes"],
        strategy="ddp" if distributed else "auto", precision=device.precision, deterministic=device.deterministic,
        logger=[CSVLogger(folder, name="", version=""), TensorBoardLogger(folder, name="tensorboard", version="")],
        callbacks=[ModelCheckpoint(dirpath=folder / "checkpoints", filename="epoch={epoch:03d}",
                                   auto_insert_metric_name=False, every_n_epochs=config["checkpoint_every"],
                                   save_top_k=-1, save_last=True)],
        log_every_n_steps=1, enable_model_summary=False, enable_progress_bar=not quiet,
    )
    checkpoint = None
    if resume:
        checkpoint = folder / "checkpoints" / "last.ckpt" if resume == "last" else Path(resume)
        if not checkpoint.exists():
            raise NoldoError(f"no checkpoint to resume from at {checkpoint}")
    trainer.fit(module, datamodule=data_module, ckpt_path=checkpoint)
    curve = plot_curves(folder / "metrics.csv", folder / "loss.png", {"loss": ("train_loss", "v_loss")})
    truth = plot_curves(folder / "metrics.csv", folder / "truth.png",
                        {title: [key.format(b=b) for key in keys for b in ("s1", "s2")]
                         for title, keys in PANELS.items()})
    metrics = {k: round(float(v), 5) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return {"run": str(folder), "epochs": trainer.current_epoch, "metrics": metrics,
            "last_checkpoint": str(folder / "checkpoints" / "last.ckpt"), "loss_curve": str(curve),
            "truth_curves": str(truth) if truth else None}
