"""Two-branch U-Nets for CromSS, downstream segmentation models, and encoder weight transfer (the files and the
pretrained weights are :mod:`benchmark.weights`'s).

Attribute names follow the original CromSS models, so a Lightning module holding one as ``net`` writes
checkpoints in the original key layout (docs/method.md, "Architectures and the checkpoint key layout"):
middle fusion ``net.encoder1`` (S1), ``net.encoder`` (S2), shared ``net.decoder`` and
``net.segmentation_head``; late fusion ``net.model1`` (S1) and ``net.model2`` (S2), two whole U-Nets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn

from benchmark.weights import input_channels, load_state, read_checkpoint, resolve
from benchmark.weights import load_encoder_state as load_encoder_state  # re-exported: it was defined here
from noldo import catalog
from noldo.errors import NoldoError

log = logging.getLogger(__name__)
ARCHITECTURES = {"unet": smp.Unet, "fpn": smp.FPN, "deeplabv3plus": smp.DeepLabV3Plus, "pspnet": smp.PSPNet}


class TwoBranchUNet(nn.Module):
    """An S1 and an S2 U-Net branch with middle (shared decoder and head) or late (independent) fusion.

    Example:
        >>> net = TwoBranchUNet("mid", encoder="resnet18")
        >>> l1, l2 = net(torch.zeros(2, 2, 64, 64), torch.zeros(2, 13, 64, 64))
        >>> l1.shape
        torch.Size([2, 9, 64, 64])
    """

    def __init__(self, fusion: str = "mid", s1_channels: int = 2, s2_channels: int = 13, classes: int = 9,
                 encoder: str = "resnet50", encoder_depth: int = 5):
        super().__init__()
        if fusion not in ("mid", "late"):
            raise NoldoError(f"fusion must be 'mid' or 'late', got {fusion!r}")
        self.fusion = fusion
        if fusion == "late":
            self.model1 = smp.Unet(encoder, encoder_weights=None, in_channels=s1_channels, classes=classes,
                                   encoder_depth=encoder_depth, decoder_channels=_decoder_channels(encoder_depth))
            self.model2 = smp.Unet(encoder, encoder_weights=None, in_channels=s2_channels, classes=classes,
                                   encoder_depth=encoder_depth, decoder_channels=_decoder_channels(encoder_depth))
            return
        unet = smp.Unet(encoder, encoder_weights=None, in_channels=s2_channels, classes=classes,
                        encoder_depth=encoder_depth, decoder_channels=_decoder_channels(encoder_depth))
        self.encoder, self.decoder, self.segmentation_head = unet.encoder, unet.decoder, unet.segmentation_head
        self.encoder1 = get_encoder(encoder, in_channels=s1_channels, depth=encoder_depth, weights=None)

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the S1 branch and of the S2 branch, each (N, K, H, W)."""
        if self.fusion == "late":
            return self.model1(s1), self.model2(s2)
        return tuple(self.segmentation_head(self.decoder(encoder(x)))
                     for encoder, x in ((self.encoder1, s1), (self.encoder, s2)))

    def encoders(self) -> dict[str, nn.Module]:
        """The encoder of each modality."""
        if self.fusion == "late":
            return {"s1": self.model1.encoder, "s2": self.model2.encoder}
        return {"s1": self.encoder1, "s2": self.encoder}


def _decoder_channels(depth: int) -> tuple[int, ...]:
    return (256, 128, 64, 32, 16)[:depth]


def build_downstream(arch: str, in_channels: int, classes: int, encoder_state: dict[str, torch.Tensor] | None = None,
                     encoder: str = "resnet50", encoder_depth: int = 5) -> nn.Module:
    """A downstream model (``unet``, ``fpn``, ``deeplabv3plus``, ``pspnet``) with a transferred encoder.

    Missing encoder keys or mismatched shapes (e.g. 13-band weights into a 9-band model) raise; keys the
    encoder does not use at this depth are reported. Decoders start from random weights.
    """
    name = arch.lower()
    if name not in ARCHITECTURES:
        raise NoldoError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    kwargs = {"unet": {"decoder_channels": _decoder_channels(encoder_depth)},
              "pspnet": {"upsampling": 2**encoder_depth}}.get(name, {})  # PSPNet predicts at the encoder's stride
    model = ARCHITECTURES[name](encoder, encoder_weights=None, in_channels=in_channels, classes=classes,
                                encoder_depth=encoder_depth, **kwargs)
    if encoder_state is not None:
        load_encoder(model.encoder, encoder_state)
    return model


def load_encoder(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load encoder weights strictly for what the module has; report what it does not use."""
    own = module.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and v.shape != own[k].shape]
    if shapes:
        raise NoldoError(f"encoder weights do not fit this model: {shapes[0]} (e.g. a 13-band encoder into a "
                         f"9-band model){' and more' if len(shapes) > 1 else ''}")
    missing = sorted(set(own) - set(state))
    if missing:
        raise NoldoError(f"encoder weights lack {len(missing)} keys of this model, e.g. {missing[0]}")
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        log.info("%d encoder tensors are not used at this depth (e.g. %s)", len(unexpected), unexpected[0])
    module.load_state_dict({k: v for k, v in state.items() if k in own})


def encoder(weights: Any = None, modality: str | None = None, name: str | None = None, depth: int = 5,
            in_channels: int | None = None, path: str | Path | None = None) -> nn.Module:
    """An smp encoder with pretrained weights loaded (docs/weights.md), or randomly initialised.

    ``weights``: anything :func:`benchmark.weights.resolve` reads (a ``CromSS`` or ``TorchGeo`` member, its name
    ``cromss:NAME`` / ``torchgeo:NAME[=PATH]``, a ``Checkpoint`` or a checkpoint path with ``modality``) or None for
    random init with ``in_channels``. ``name`` is the smp encoder [the weights' model, else resnet50], ``path`` a
    member's local file [its download].

    Example:
        >>> from benchmark.weights import TorchGeo
        >>> net = encoder(TorchGeo.SENTINEL2_ALL_MOCO, path="resnet50_sentinel2_all_moco.pth")  # doctest: +SKIP
    """
    if weights is None:
        if in_channels is None:
            raise NoldoError("a randomly initialised encoder needs in_channels")
        return get_encoder(name or "resnet50", in_channels=in_channels, depth=depth, weights=None)
    found, path = resolve(weights, modality, path)
    state = found.get_state_dict(path)
    module = get_encoder(name or found.meta["model"] or "resnet50", in_channels=input_channels(state), depth=depth,
                         weights=None)
    load_encoder(module, state)
    return module


def load_pretrained(path: str | Path) -> tuple[TwoBranchUNet, dict[str, Any]]:
    """A two-branch pretraining checkpoint of ours (``benchmark.cromss``) as its model, in eval mode, and its
    hyper-parameters (fusion, bands, encoder, ...)."""
    checkpoint = read_checkpoint(path)
    hparams = dict(checkpoint.get("hyper_parameters") or {}) if isinstance(checkpoint, dict) else {}
    if hparams.get("single_modality") or not {"fusion", "bands", "encoder"} <= set(hparams):
        raise NoldoError(f"{path} is not a two-branch CromSS pretraining checkpoint of benchmark.cromss")
    model = TwoBranchUNet(hparams["fusion"], 2, len(catalog.band_subset(hparams["bands"])), len(catalog.DW_CLASSES),
                          hparams["encoder"])
    model.load_state_dict(load_state(path))
    return model.eval(), hparams
