"""The CromSS Lightning module: a two-branch U-Net trained with :func:`cromss_loss`, or a single-modal baseline."""

from __future__ import annotations

from typing import Any

import lightning as L
import segmentation_models_pytorch as smp
import torch

from benchmark.cromss.losses import DEFAULTS, cromss_loss, single_modal_loss
from benchmark.cromss.truth_metrics import judged, truth_metrics
from benchmark.data import NUM_CLASSES, prior_batch
from benchmark.device_batch import device_batch
from benchmark.models import TwoBranchUNet
from noldo.catalog import band_subset


class CromSSModule(L.LightningModule):
    """CromSS pretraining (docs/method.md, "Losses" to "Schedules") with the ablation switches of the paper.

    ``single_modality`` (``s1`` or ``s2``) trains one U-Net on noisy labels alone (CE + Dice), the
    single-modal baseline: ``selection`` then selects by its own label confidence, without entangling, and
    ``smoothing`` smooths its targets; its checkpoint keys are ``net.encoder.*``.
    """

    def __init__(self, fusion: str = "mid", bands: str = "13B", encoder: str = "resnet50", lr: float = 5e-3,
                 weight_decay: float = 1e-8, lr_factor: float = 0.5, lr_patience: int = 30, T: int = 80,
                 prop: float = 0.5, alpha: float = 0.15, beta: float = 0.05, lambda_con: float = 1.0,
                 selection: bool = True, smoothing: bool = True, consistency: bool = True,
                 single_modality: str | None = None, channels_last: bool = False):
        super().__init__()
        self.save_hyperparameters()
        s2_channels = len(band_subset(bands))
        if single_modality:
            channels = {"s1": 2, "s2": s2_channels}[single_modality]
            self.net = smp.Unet(encoder, encoder_weights=None, in_channels=channels, classes=NUM_CLASSES)
        else:
            self.net = TwoBranchUNet(fusion, 2, s2_channels, NUM_CLASSES, encoder)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.config = {key: self.hparams[key] for key in DEFAULTS}

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def forward(self, batch: dict[str, Any]):
        if self.hparams.single_modality:
            return self.net(self._input(batch[self.hparams.single_modality]))
        return self.net(self._input(batch["s1"]), self._input(batch["s2"]))

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """``loader: device``: encoding, augmentation and prior of the raw crops, batched on the device."""
        return device_batch(batch) if "raw" in batch else batch

    @staticmethod
    def _prior(batch: dict[str, Any]) -> torch.Tensor | None:
        if "prior" in batch:
            return batch["prior"]
        if "labels" in batch:  # computed here, on the accelerator, from labels with the filter margin
            labels = batch["labels"]
            seasons = torch.tensor([m["season"] for m in batch["meta"]], device=labels.device)
            return prior_batch(labels, seasons, margin=(labels.shape[-1] - batch["label"].shape[-1]) // 2)
        return None

    def training_step(self, batch: dict[str, Any], _: int) -> torch.Tensor:
        labels = batch["label"]
        size = len(labels)
        if self.hparams.single_modality:
            logits = self(batch)
            out = single_modal_loss(logits, labels, self._prior(batch), self.current_epoch, self.config)
            self.log("train_loss", out["total"], on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
            kept = out["w_l"] >= 1 if self.hparams.selection else None
            self._log_truth(batch, {self.hparams.single_modality: (logits, kept)}, "")
            return out["total"]
        logits_s1, logits_s2 = self(batch)
        out = cromss_loss(logits_s1, logits_s2, labels, self._prior(batch), self.current_epoch, self.config)
        metrics = {"train_loss": out["total"], "train_seg_s1": out["seg1"], "train_seg_s2": out["seg2"],
                   "train_con": out["con"], "weight_l_s2": out["w_l2"].mean()}
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        self.log("loss", out["total"], prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        kept = self.hparams.selection
        self._log_truth(batch, {"s1": (logits_s1, out["w_l1"] >= 1 if kept else None),
                                "s2": (logits_s2, out["w_l2"] >= 1 if kept else None)}, "")
        return out["total"]

    def validation_step(self, batch: dict[str, Any], _: int) -> None:
        """Hard labels, no smoothing, no selection: plain CE + Dice per branch plus the unweighted consistency."""
        labels = batch["label"]
        if self.hparams.single_modality:
            logits = self(batch)
            loss = single_modal_loss(logits, labels)["total"]
            branches = {self.hparams.single_modality: (logits, None)}
        else:
            logits_s1, logits_s2 = self(batch)
            out = cromss_loss(logits_s1, logits_s2, labels, None, self.current_epoch,
                              {**self.config, "selection": False, "smoothing": False, "consistency": True})
            loss = out["seg1"] + out["seg2"] + out["con"]
            branches = {"s1": (logits_s1, None), "s2": (logits_s2, None)}
        self.log("v_loss", loss, prog_bar=True, batch_size=len(labels), sync_dist=True)
        self._log_truth(batch, branches, "val_", only=("truth_acc",))

    def _log_truth(self, batch: dict[str, Any], branches: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
                   prefix: str, only: tuple[str, ...] | None = None) -> None:
        """Per branch, the metrics against the truth when the store has one (benchmark/cromss/truth_metrics.py)."""
        if "truth" not in batch:
            return
        if not prefix:  # the base rate the kept pixels' precision compares with
            valid = judged(batch["label"], batch["truth"])
            right = ((batch["label"] == batch["truth"]) & valid).sum() / valid.sum().clamp_min(1)
            self.log("labels_right", right, on_step=False, on_epoch=True, batch_size=len(valid), sync_dist=True)
        for branch, (logits, kept) in branches.items():
            for key, value in truth_metrics(logits.detach(), batch["label"], batch["truth"], kept).items():
                if (only is None or key in only) and not torch.isnan(value):
                    self.log(f"{prefix}{key}_{branch}", value, on_step=False, on_epoch=True,
                             batch_size=len(logits), sync_dist=True)

    def configure_optimizers(self):
        optimiser = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="min", factor=self.hparams.lr_factor,
                                                               patience=self.hparams.lr_patience, threshold=1e-4)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "monitor": "v_loss",
                                                         "interval": "epoch"}}
