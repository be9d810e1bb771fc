"""``python -m benchmark.cromss``: CromSS pretraining on a noldo store.

Paper settings: --config benchmark/configs/cromss-paper.yaml; a CPU-sized demo:
--config benchmark/configs/cromss-demo.yaml. Flags override the config file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

DEFAULTS = {
    "split": "nol", "fusion": "mid", "bands": "13B", "encoder": "resnet50", "epochs": 200, "batch_size": 128,
    "lr": 5e-3, "weight_decay": 1e-8, "lr_factor": 0.5, "lr_patience": 30, "T": 80, "prop": 0.5, "alpha": 0.15,
    "beta": 0.05, "lambda_con": 1.0, "selection": True, "smoothing": True, "consistency": True,
    "single_modality": None, "crop": 256, "workers": 4, "val_fraction": 0.01, "checkpoint_every": 10, "seed": 42,
    "rotation": "90", "normalization": "cromss", "prior": "cpu", "accelerator": "auto", "devices": 1,
    "num_nodes": 1, "precision": None, "max_steps": -1,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.cromss", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=None)
    p.add_argument("--data", required=True, type=Path, help="the store ROOT (with a 4-season split)")
    p.add_argument("--config", type=Path, help="YAML with any of the settings below (flags win)")
    p.add_argument("--out", type=Path, help="run folder [default: runs/cromss-<time>]")
    p.add_argument("--resume", nargs="?", const="last", help="continue from OUT/checkpoints/last.ckpt or a path")
    p.add_argument("--split", help="split to pretrain on [nol]")
    p.add_argument("--fusion", choices=["mid", "late"], help="middle or late fusion [mid]")
    p.add_argument("--bands", choices=["13B", "9B"], help="S2 bands [13B]")
    p.add_argument("--encoder", help="any smp encoder name [resnet50]")
    p.add_argument("--epochs", type=int, help="[200]")
    p.add_argument("--max-steps", dest="max_steps", type=int, help="stop after this many steps (smoke runs)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="per process [128]")
    p.add_argument("--lr", type=float, help="Adam learning rate [5e-3]")
    p.add_argument("--crop", type=int, help="training crop [256]")
    p.add_argument("--workers", type=int, help="DataLoader workers per process [4]")
    p.add_argument("--seed", type=int, help="[42]")
    p.add_argument("--T", type=int, help="ramp length in epochs [80]")
    p.add_argument("--prop", type=float, help="kept fraction after the ramp, ρ [0.5]")
    p.add_argument("--alpha", type=float, help="prior weight of the smoothed target [0.15]")
    p.add_argument("--beta", type=float, help="uniform weight of the smoothed target [0.05]")
    p.add_argument("--lambda-con", dest="lambda_con", type=float, help="consistency weight [1]")
    p.add_argument("--no-selection", dest="selection", action="store_false", help="ablation: no sample selection")
    p.add_argument("--no-smoothing", dest="smoothing", action="store_false", help="ablation: no label smoothing")
    p.add_argument("--no-consistency", dest="consistency", action="store_false", help="ablation: no consistency")
    p.add_argument("--single-modality", dest="single_modality", choices=["s1", "s2"],
                   help="single-modal noisy-label pretraining of one U-Net")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, help="epochs between checkpoints [10]")
    p.add_argument("--accelerator", help="auto, cpu, gpu [auto]")
    p.add_argument("--devices", type=int, help="devices per node; >1 runs Lightning DDP [1]")
    p.add_argument("--num-nodes", dest="num_nodes", type=int, help="nodes (SLURM is detected) [1]")
    p.add_argument("--precision", help="Lightning precision [bf16-mixed on CUDA, else 32-true]")
    p.set_defaults(selection=None, smoothing=None, consistency=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    from benchmark.runs import UserError, fail, resolve_config
    from noldo.errors import NoldoError

    flags = {k: v for k, v in vars(args).items() if k not in ("data", "config", "out", "resume")}
    try:
        config = resolve_config(DEFAULTS, args.config, flags)
        return train(args.data, config, args.out, args.resume)
    except (UserError, ValueError, FileNotFoundError, NoldoError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return {}


def train(data: Path, config: dict, out: Path | None = None, resume: str | None = None, quiet: bool = False) -> dict:
    """Pretrain with a resolved config; writes checkpoints, logs, config and a loss curve into the run folder."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from benchmark.cromss.module import CromSSModule
    from benchmark.datamodules import NoLDataModule
    from benchmark.runs import plot_curves, print_json, run_folder, save_config
    from noldo.errors import NoldoError

    logging.getLogger("lightning").setLevel(logging.WARNING)
    folder = run_folder(out, "cromss")
    L.seed_everything(config["seed"], workers=True, verbose=False)
    data_module = NoLDataModule(data, config["split"], config["bands"], config["crop"], config["batch_size"],
                                config["workers"], config["val_fraction"], config["normalization"],
                                config["rotation"], config["prior"], config["seed"])
    try:
        data_module.setup()
    except NoldoError as exc:
        raise ValueError(str(exc)) from None
    if len(data_module.train_ids) < config["batch_size"]:
        raise ValueError(f"{data} has {len(data_module.train_ids)} training samples in {config['split']}, fewer than "
                         f"one batch ({config['batch_size']}); lower --batch-size or build more samples")
    cuda = torch.cuda.is_available() and config["accelerator"] in ("auto", "gpu", "cuda")
    config["precision"] = config["precision"] or ("bf16-mixed" if cuda else "32-true")
    save_config(folder, {**config, "data": str(data)})
    keys = ("fusion", "bands", "encoder", "lr", "weight_decay", "lr_factor", "lr_patience", "T", "prop", "alpha",
            "beta", "lambda_con", "selection", "smoothing", "consistency", "single_modality")
    module = CromSSModule(**{k: config[k] for k in keys}, channels_last=cuda)
    distributed = config["devices"] > 1 or config["num_nodes"] > 1
    trainer = L.Trainer(
        default_root_dir=folder, max_epochs=config["epochs"], max_steps=config["max_steps"],
        accelerator=config["accelerator"], devices=config["devices"], num_nodes=config["num_nodes"],
        strategy="ddp" if distributed else "auto", precision=config["precision"], deterministic=not cuda,
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
            raise FileNotFoundError(f"no checkpoint to resume from at {checkpoint}")
    trainer.fit(module, datamodule=data_module, ckpt_path=checkpoint)
    curve = plot_curves(folder / "metrics.csv", folder / "loss.png", ("train_loss", "v_loss"))
    metrics = {k: round(float(v), 5) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary = {"run": str(folder), "epochs": trainer.current_epoch, "metrics": metrics,
               "last_checkpoint": str(folder / "checkpoints" / "last.ckpt"), "loss_curve": str(curve)}
    if trainer.is_global_zero and not quiet:
        print_json(summary)
    return summary


if __name__ == "__main__":
    main()
