"""The transfer model: a downstream segmentation network around a transferred encoder, as a LightningModule.

The protocol is that of docs/method.md ("Transfer protocol"): frozen or fine-tuned encoder, CE + Dice
with :data:`~benchmark.tasks.IGNORE` ignored, Adam with :func:`cosine_factor` per epoch.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import segmentation_models_pytorch as smp
import torch

from benchmark.metrics import confusion_metric, scores_from_confusion
from benchmark.models import build_downstream
from benchmark.tasks import IGNORE
from benchmark.weights import resolve
from noldo.errors import NoldoError


def cosine_factor(epoch: int, lr: float, final: float, span: int) -> float:
    """LR multiplier: lr(t) = f + ½·(1 + cos(π·t/span))·(lr − f) for t < span, then f; relative to lr."""
    if epoch >= span:
        return final / lr
    return (final + 0.5 * (1 + math.cos(math.pi * epoch / span)) * (lr - final)) / lr


class FinetuneModule(L.LightningModule):
    """A downstream segmentation model with a transferred (frozen or trainable) encoder.

    ``arch`` is a decoder of :func:`~benchmark.models.build_downstream`; ``weights`` names the pretrained
    weights whose ``modality`` encoder is transferred, as :func:`benchmark.weights.resolve` reads them (a
    checkpoint path, ``cromss:NAME`` or ``torchgeo:NAME``, with ``=PATH``; None: random init). ``mode`` ``frozen``
    trains the decoder only and keeps the encoder in eval mode, BatchNorm statistics included, unless
    ``bn_update``. After :meth:`test` the summed confusion matrix is in :attr:`test_result`.
    """

    def __init__(self, arch: str = "deeplabv3plus", in_channels: int = 13, classes: int = 9, encoder: str = "resnet50",
                 encoder_depth: int = 5, weights: str | None = None, modality: str = "s2", mode: str = "finetune",
                 bn_update: bool = False, lr: float = 5e-4, final_lr: float = 1e-5, cosine_epochs: int = 40,
                 weight_decay: float = 1e-8):
        super().__init__()
        self.save_hyperparameters()
        state, self.normalization = None, None
        if weights:
            pretrained, path = resolve(weights, modality)
            if pretrained.meta["model"] not in (None, encoder):
                raise NoldoError(f"{weights} is a {pretrained.meta['model']} encoder; give --encoder "
                                 f"{pretrained.meta['model']}")
            state, self.normalization = pretrained.get_state_dict(path), pretrained.meta["normalization"]
        self.model = build_downstream(arch, in_channels, classes, state, encoder, encoder_depth)
        self.frozen = mode == "frozen"
        if self.frozen:
            for parameter in self.model.encoder.parameters():
                parameter.requires_grad = False
        self.ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
        self.dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=IGNORE)
        self.val_matrix, self.test_matrix = confusion_metric(classes), confusion_metric(classes)
        self.test_result: np.ndarray | None = None

    def setup(self, stage: str) -> None:
        """Refuse data encoded otherwise than the weights expect (a LightningCLI config can mix them)."""
        expected, data = self.normalization, getattr(self.trainer.datamodule, "normalization", None)
        if expected is not None and data is not None and data != expected:
            raise NoldoError(f"{self.hparams.weights} expect inputs encoded as {expected!r}, the data are {data!r}: "
                             f"set the datamodule's normalization to {expected} (--data.init_args.normalization)")

    def train(self, mode: bool = True) -> FinetuneModule:
        super().train(mode)
        if self.frozen and not self.hparams.bn_update:
            self.model.encoder.eval()  # frozen means frozen: BatchNorm statistics too
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the input size: the input is reflect-padded to a multiple of 32 and cropped back."""
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
