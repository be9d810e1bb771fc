"""``python -m benchmark.cli``: the benchmark's Lightning modules and datamodules under LightningCLI.

The same YAML vocabulary as TorchGeo and TerraTorch (``class_path``/``init_args``, ``fit``/``validate``/
``test``, the resolved ``config.yaml`` saved in each run); lightning installs no ``lightning fit`` command on
its own, so this module is the entry point. Models and datamodules are chosen by class path:
``benchmark.cromss.module.CromSSModule`` with ``benchmark.datamodules.NoLDataModule`` (pretraining),
``benchmark.finetune_module.FinetuneModule`` with ``benchmark.datamodules.DownstreamDataModule`` (transfer).
The plain CLIs (``python -m benchmark.cromss``, ``python -m benchmark.finetune``) stay the way to run the
paper's protocol with its schedules and reports; configs for this one are in ``benchmark/configs/cli/``.

Example:
    python -m benchmark.cli fit -c benchmark/configs/cli/cromss-demo.yaml --trainer.max_epochs 1
"""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.cli import LightningCLI


def main(args: list[str] | None = None) -> LightningCLI:
    """Run LightningCLI (``args`` instead of ``sys.argv[1:]`` when given)."""
    logging.getLogger("lightning").setLevel(logging.WARNING)
    return LightningCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                        seed_everything_default=0, save_config_kwargs={"overwrite": True}, args=args,
                        auto_configure_optimizers=False)


if __name__ == "__main__":
    main()
