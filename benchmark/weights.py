"""Encoder weights: checkpoint files read safely, their key layouts, and pretrained weights as TorchGeo-style
enums (docs/weights.md).

:class:`CromSS` (the released checkpoints, one member per checkpoint and modality) and :class:`TorchGeo` (TorchGeo's
SSL4EO-S12 MoCo ResNet-50s, the transfer baseline) subclass torchvision's ``WeightsEnum``, as TorchGeo's own enums
do, rather than being an enum of ours: a member has the ``url``, ``meta`` and ``transforms`` TorchGeo code reads, and
TorchGeo's ``repr`` (``CromSS.S2_13B_MID``). Two things differ on purpose. ``get_state_dict(path=None)`` returns the
encoder of the member's modality with smp's keys, from the local file ``path`` or from the member's download, always
read by :func:`read_checkpoint` (tensors and plain values, never code); ``transforms`` encodes one stored
(bands, H, W) array with :func:`benchmark.data.encode` as the weights expect. :class:`Checkpoint` gives any local
pretraining checkpoint (a run of ``benchmark.cromss``) the same API. ``str(member)`` is its command-line name,
``cromss:S2_13B_MID`` or ``torchgeo:SENTINEL2_ALL_MOCO``, read back by :func:`resolve`.

    >>> str(CromSS.S2_MID), CromSS.S2_MID.meta["label"], TorchGeo.SENTINEL2_ALL_MOCO.meta["normalization"]
    ('cromss:S2_13B_MID', 'CromSS-midF (13B)', 'ssl4eo-moco')
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import sys
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path, PosixPath
from typing import Any
from urllib.parse import quote

import torch
from torchvision.models._api import Weights, WeightsEnum

from benchmark.data import band_indices, encode
from benchmark.runs import read_yaml
from noldo import catalog
from noldo.errors import NoldoError, choose

log = logging.getLogger(__name__)

#: What a checkpoint may hold besides tensors and plain values: the hyper-parameters of the released CromSS
#: checkpoints (an argparse.Namespace) and paths among hyper-parameters. Our own checkpoints need nothing more.
SAFE_GLOBALS = (argparse.Namespace, PosixPath)

#: The key layouts of encoder weights, in the order they are detected: a key prefix that marks the layout, where
#: each modality's encoder lives (after the ``net.`` prefix) and what the layout is (docs/method.md, "Architectures
#: and the checkpoint key layout"). ``bare`` is a whole ResNet as TorchGeo stores it (timm's keys); its ``fc.*`` is
#: dropped.
LAYOUTS: dict[str, tuple[str, dict[str, str], str]] = {
    "mid": ("encoder1.", {"s1": "encoder1.", "s2": "encoder."},
            "a middle-fusion CromSS checkpoint (net.encoder1.*, net.encoder.*)"),
    "late": ("model1.encoder.", {"s1": "model1.encoder.", "s2": "model2.encoder."},
             "a late-fusion CromSS checkpoint (net.model1.*, net.model2.*)"),
    "single": ("encoder.", {"s1": "encoder.", "s2": "encoder."}, "a single-encoder checkpoint (encoder.*)"),
    "bare": ("conv1.", {"s1": "", "s2": ""}, "a bare ResNet state dict (conv1.*, layer1.* …, TorchGeo's layout)"),
}


def read_checkpoint(path: str | Path) -> Any:
    """The object a checkpoint file holds (a Lightning checkpoint: a dict with ``state_dict`` and
    ``hyper_parameters``), unpickled with ``weights_only``: a file needing anything beyond tensors, plain
    values and :data:`SAFE_GLOBALS` (code that would run on loading) is refused, never loaded."""
    path = Path(path)
    if not path.is_file():
        raise NoldoError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        needed = found[1] if found else "more than tensors and plain values"
        raise NoldoError(f"{path} is not trusted: it needs {needed}, which is not on the allow-list "
                         "benchmark.weights.SAFE_GLOBALS; it was not loaded") from None


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's state dict (a Lightning checkpoint's ``state_dict`` or a bare state dict),
    ``net.`` prefixes removed."""
    checkpoint = read_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise NoldoError(f"{path} is not a state dict or a Lightning checkpoint")
    return {k.removeprefix("net."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def read_encoder(path: str | Path, modality: str,
                 layouts: tuple[str, ...] = tuple(LAYOUTS)) -> tuple[dict[str, torch.Tensor], str]:
    """One modality's encoder from a checkpoint file (keys as in an smp encoder: ``conv1.weight``, ...) and the
    file's layout, a key of :data:`LAYOUTS`; a file in another layout than ``layouts`` is refused."""
    if modality not in ("s1", "s2"):
        raise NoldoError(f"modality must be 's1' or 's2', got {modality!r}")
    state = load_state(path)
    layout = next((name for name, (marker, _, _) in LAYOUTS.items() if any(k.startswith(marker) for k in state)),
                  None)
    if layout is None:
        raise NoldoError(f"{path}: no encoder weights found (expected net.encoder1/net.encoder, net.model1/net.model2, "
                         "encoder.* or conv1.* keys)")
    if layout not in layouts:
        raise NoldoError(f"{path} holds {LAYOUTS[layout][2]}, not {' or '.join(LAYOUTS[k][2] for k in layouts)}")
    prefix = LAYOUTS[layout][1][modality]
    encoder = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix) and not (layout == "bare" and k.startswith("fc."))}
    log.info("%s: %d %s encoder tensors (layout %s)", Path(path).name, len(encoder), modality, layout)
    return encoder, layout


def load_encoder_state(path: str | Path, modality: str) -> dict[str, torch.Tensor]:
    """The state dict of one modality's encoder (keys as in an smp encoder: ``conv1.weight``, ...).

    Reads our pretraining checkpoints and the original CromSS Lightning checkpoints (``net.encoder1.*`` /
    ``net.encoder.*`` for middle fusion, ``net.model1.encoder.*`` / ``net.model2.encoder.*`` for late
    fusion), detecting the layout; a single-encoder state dict (``encoder.*``) and a bare ResNet (TorchGeo's
    ``conv1.*`` …, without ``fc.*``) are also accepted.

    Example:
        >>> state = load_encoder_state("weights-cromss-13B-midFusion-epoch=199.ckpt", "s2")  # doctest: +SKIP
    """
    return read_encoder(path, modality)[0]


def input_channels(state: dict[str, torch.Tensor]) -> int | None:
    """The input channels of an encoder state's first convolution (None without one)."""
    return next((int(v.shape[1]) for v in state.values() if v.ndim == 4), None)


# --- pretrained weights ----------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where :class:`CromSS` members are downloaded: ``$XDG_CACHE_HOME/noldo/weights`` (``~/.cache/noldo/weights``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "noldo" / "weights"


_CROMSS_PAPER = next(r for r in catalog.REFERENCES if r.key == "liu2025cromss")


def _band_names(modality: str, indices: tuple[int, ...]) -> tuple[str, ...]:
    return tuple((catalog.S1_BANDS if modality == "s1" else catalog.S2_BANDS)[i].name for i in indices)


def _cromss(modality: str, subset: str, fusion: str) -> Weights:
    """A released CromSS checkpoint's encoder of one modality."""
    file = f"weights-cromss-{subset}-{fusion}Fusion-epoch=199.ckpt"
    indices = band_indices(modality, subset)
    return Weights(
        url=f"https://huggingface.co/datasets/{catalog.HF_REPO}/resolve/{catalog.HF_REVISION}/{quote(file)}",
        transforms=partial(encode, modality=modality, bands=indices, normalization="cromss"),
        meta={"modality": modality, "bands": _band_names(modality, indices), "in_chans": len(indices),
              "subset": subset, "fusion": fusion, "layout": fusion, "model": "resnet50", "normalization": "cromss",
              "dataset": "SSL4EO-S12@NoL", "file": file, "hub": catalog.HF_REPO, "revision": catalog.HF_REVISION,
              "sha256": None, "licence": "mit", "repo": "https://github.com/zhu-xlab/CromSS",
              "publication": f"https://arxiv.org/abs/{_CROMSS_PAPER.arxiv}",
              "label": f"CromSS-{fusion}F ({subset})"})


def _torchgeo(modality: str, url: str) -> Weights:
    """A TorchGeo SSL4EO-S12 MoCo ResNet-50 (``torchgeo.models.ResNet50_Weights``, TorchGeo 0.8)."""
    indices = band_indices(modality, "13B")
    file = url.rsplit("/", 1)[-1]
    return Weights(
        url=url, transforms=partial(encode, modality=modality, bands=indices, normalization="ssl4eo-moco"),
        meta={"modality": modality, "bands": _band_names(modality, indices), "in_chans": len(indices),
              "layout": "bare", "model": "resnet50", "normalization": "ssl4eo-moco", "dataset": "SSL4EO-S12",
              "ssl_method": "moco", "file": file, "sha256": None,
              "sha256_prefix": re.search(r"-([0-9a-f]{8})\.pth$", file)[1], "licence": "cc-by-4.0",
              "repo": "https://github.com/zhu-xlab/SSL4EO-S12", "publication": "https://arxiv.org/abs/2211.07044",
              "label": "torchgeo-ssl4eo-moco"})


class PublishedWeights(WeightsEnum):
    """What the members of :class:`CromSS` and :class:`TorchGeo` share."""

    def __str__(self) -> str:
        return f"{type(self).__name__.lower()}:{self.name}"

    def get_state_dict(self, path: str | Path | None = None, **_: Any) -> dict[str, torch.Tensor]:
        """The encoder of this member's modality (smp keys) from the local file ``path``, else from the download;
        a file in another layout, or whose encoder takes other input channels, is refused. Other keywords
        (TorchGeo's model builders pass ``progress``) are accepted and ignored."""
        path = Path(path) if path is not None else self._fetch()
        state, _ = read_encoder(path, self.meta["modality"], (self.meta["layout"],))
        channels = input_channels(state)
        if channels != self.meta["in_chans"]:
            raise NoldoError(f"{path}: its {self.meta['modality']} encoder takes {channels} input channels, "
                             f"{self!r} {self.meta['in_chans']} ({'+'.join(self.meta['bands'])})")
        if self.meta["modality"] == "s1" and "subset" in self.meta:  # both S1 encoders take 2: ask the S2 branch
            beside = input_channels(read_encoder(path, "s2", (self.meta["layout"],))[0])
            if beside != len(catalog.band_subset(self.meta["subset"])):
                raise NoldoError(f"{path}: its S1 encoder was pretrained beside a {beside}-band S2 branch, {self!r} "
                                 f"beside the {self.meta['subset']} one")
        return state


class CromSS(PublishedWeights):
    """The encoders of the released CromSS checkpoints (ResNet-50): S2 or S1, of the 13B or the 9B checkpoint, of
    middle or late fusion; ``S2_MID``, ``S2_LATE``, ``S1_MID`` and ``S1_LATE`` are the 13B ones.

    ``meta``: modality, bands (names), in_chans, subset (the S2 bands the checkpoint was pretrained with; its S1
    encoder's too), fusion, layout, model, normalization (``cromss``), dataset, file, hub (the dataset holding it),
    revision, sha256 (None: ``noldo download`` checks the file against the hub's own), licence (``mit``, the dataset
    card's), repo, publication and label (the row name in the results table, as in the paper). Without a path,
    ``get_state_dict`` fetches the four checkpoints with ``noldo download --what weights`` into :func:`cache_dir`.
    """

    S2_13B_MID = _cromss("s2", "13B", "mid")
    S2_13B_LATE = _cromss("s2", "13B", "late")
    S2_9B_MID = _cromss("s2", "9B", "mid")
    S2_9B_LATE = _cromss("s2", "9B", "late")
    S1_13B_MID = _cromss("s1", "13B", "mid")
    S1_13B_LATE = _cromss("s1", "13B", "late")
    S1_9B_MID = _cromss("s1", "9B", "mid")
    S1_9B_LATE = _cromss("s1", "9B", "late")
    S2_MID, S2_LATE, S1_MID, S1_LATE = S2_13B_MID, S2_13B_LATE, S1_13B_MID, S1_13B_LATE

    def _fetch(self) -> Path:
        from noldo.download import download

        root = cache_dir()
        if (root / self.meta["file"]).is_file():  # downloads land under their name only once verified
            return root / self.meta["file"]
        try:
            download(["weights"], root, progress=sys.stderr.isatty())
        except NoldoError as exc:
            raise NoldoError(f"cannot get {self.meta['file']} into {root} ({exc}); fetch the checkpoints online with "
                             f"`noldo download --what weights --out {root}` (offline, they are read from there), or "
                             f"give the local file ({self}=PATH)") from None
        return root / self.meta["file"]


class TorchGeo(PublishedWeights):
    """TorchGeo's SSL4EO-S12 MoCo-v2 ResNet-50s (``torchgeo.models.ResNet50_Weights``), the transfer baseline.

    ``meta`` as TorchGeo's (dataset, in_chans, model, publication, repo, ssl_method, bands: ours are spelt as in
    noldo.catalog) and modality, layout (``bare``), normalization (``ssl4eo-moco``: the input their transforms
    give, see :func:`benchmark.data.encode`), file, sha256 (None) and sha256_prefix (in the file name, checked on
    download as TorchGeo does), licence (``cc-by-4.0``, the model cards'), label. Without a path,
    ``get_state_dict`` takes the file from torch hub's cache, where TorchGeo keeps it, fetching it if missing.
    """

    SENTINEL2_ALL_MOCO = _torchgeo("s2", "https://hf.co/torchgeo/resnet50_sentinel2_all_moco/resolve/"
                                         "da4f3c9dbe09272eb902f3b37f46635fa4726879/resnet50_sentinel2_all_moco-df8b932e.pth")
    SENTINEL1_ALL_MOCO = SENTINEL1_GRD_MOCO = _torchgeo(
        "s1", "https://hf.co/torchgeo/resnet50_sentinel1_all_moco/resolve/"
              "e79862c667853c10a709bdd77ea8ffbad0e0f1cf/resnet50_sentinel1_all_moco-906e4356.pth")

    def _fetch(self) -> Path:
        from noldo.hub import offline

        target = Path(torch.hub.get_dir()) / "checkpoints" / self.meta["file"]
        if target.is_file():
            return target
        fix = f"fetch {self.url} into {target.parent} online, or give the local file ({self}=PATH)"
        if offline():
            raise NoldoError(f"HF_HUB_OFFLINE is set and {target} is missing; {fix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(self.url, str(target), self.meta["sha256_prefix"], sys.stderr.isatty())
        except Exception as exc:  # connection and HTTP errors, a sha256 that does not match
            raise NoldoError(f"cannot fetch {self.url} ({type(exc).__name__}); {fix}") from None
        return target


@dataclass(frozen=True)
class Checkpoint:
    """A local pretraining checkpoint (a run of ``benchmark.cromss``) as weights, with the API of the members.

    ``meta`` comes from its hyper-parameters: modality, bands, in_chans, subset, fusion, single_modality, model
    (None where the file does not say: a released checkpoint, whose :class:`CromSS` member reads it better),
    normalization (the run's, from ``config.yaml`` when the file is in a run's ``checkpoints/``, else ``cromss``),
    file, sha256 and licence (None), label (the file name's stem).
    """

    path: Path
    modality: str

    def __post_init__(self) -> None:
        if self.modality not in ("s1", "s2"):
            raise NoldoError(f"modality must be 's1' or 's2', got {self.modality!r}")
        object.__setattr__(self, "path", Path(self.path))

    def __str__(self) -> str:
        return str(self.path)

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    @cached_property
    def meta(self) -> dict[str, Any]:
        checkpoint = read_checkpoint(self.path)
        hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
        hparams = hparams if isinstance(hparams, dict) else {}
        subset, single = hparams.get("bands"), hparams.get("single_modality")
        known = subset is not None or self.modality == "s1"
        bands = _band_names(self.modality, band_indices(self.modality, subset)) if known else None
        config = self.path.parent.parent / "config.yaml"
        in_run = self.path.parent.name == "checkpoints" and config.is_file()
        return {"modality": self.modality, "bands": bands, "in_chans": len(bands) if bands else None,
                "subset": subset, "fusion": None if single else hparams.get("fusion"), "single_modality": single,
                "model": hparams.get("encoder"),
                "normalization": read_yaml(config).get("normalization", "cromss") if in_run else "cromss",
                "file": self.path.name, "sha256": None, "licence": None, "label": self.path.stem}

    @property
    def transforms(self) -> partial:
        if self.meta["bands"] is None:
            raise NoldoError(f"{self.path}: its S2 bands are unknown (no benchmark.cromss hyper-parameters); read a "
                             "released checkpoint with its CromSS member (docs/weights.md)")
        bands = (0, 1) if self.modality == "s1" else catalog.band_subset(self.meta["subset"])
        return partial(encode, modality=self.modality, bands=bands, normalization=self.meta["normalization"])

    def get_state_dict(self, path: str | Path | None = None) -> dict[str, torch.Tensor]:
        """The encoder of :attr:`modality` from this checkpoint (or from ``path``), any layout of :data:`LAYOUTS`."""
        single = self.meta["single_modality"]
        if single and single != self.modality:
            raise NoldoError(f"{self.path} is a single-modal {single} checkpoint: it has no {self.modality} encoder")
        return load_encoder_state(path or self.path, self.modality)


FAMILIES: dict[str, type[PublishedWeights]] = {"cromss": CromSS, "torchgeo": TorchGeo}
_NAMED = re.compile(r"(cromss|torchgeo):(\w+)(?:=(.+))?", re.IGNORECASE)


def resolve(weights: Any, modality: str | None = None,
            path: str | Path | None = None) -> tuple[PublishedWeights | Checkpoint, Path | None]:
    """The weights ``weights`` names and the local file to read them from (None: their download).

    ``weights``: a :class:`CromSS` or :class:`TorchGeo` member, TorchGeo's own ``ResNet50_Weights`` member of a
    baseline, a :class:`Checkpoint`, a member's name ``cromss:NAME`` or ``torchgeo:NAME`` with ``=PATH`` for a local
    file, or a checkpoint path (its encoder of ``modality``). A member of another modality than ``modality`` is
    refused, naming the one that fits.
    """
    if isinstance(weights, str) and (named := _NAMED.fullmatch(weights)):
        family = FAMILIES[named[1].lower()]
        weights, path = choose(family.__members__, named[2].upper(), f"{family.__name__} weights"), named[3] or path
    elif isinstance(weights, WeightsEnum) and not isinstance(weights, PublishedWeights):
        if type(weights).__name__ != "ResNet50_Weights" or weights.name not in TorchGeo.__members__:
            raise NoldoError(f"{weights!r} is not a baseline of ours; use one of "
                             f"{', '.join(f'ResNet50_Weights.{name}' for name in TorchGeo.__members__)}")
        weights = TorchGeo[weights.name]
    if isinstance(weights, str | Path):
        if modality is None:
            raise NoldoError(f"{weights}: a checkpoint file needs the modality of the encoder to take, 's1' or 's2'")
        weights = Checkpoint(Path(weights), modality)
    if not isinstance(weights, PublishedWeights | Checkpoint):
        raise NoldoError(f"unknown weights {weights!r}: give a CromSS or TorchGeo member, cromss:NAME, torchgeo:NAME "
                         "or a checkpoint file (docs/weights.md)")
    if isinstance(weights, PublishedWeights) and modality not in (None, weights.meta["modality"]):
        twin = next(str(m) for m in type(weights) if m.meta["modality"] == modality
                    and m.meta["label"] == weights.meta["label"])
        raise NoldoError(f"{weights} is an {weights.meta['modality']} encoder; for {modality} take {twin}")
    return weights, Path(path) if path is not None else None
