"""Label-trust audit: how far a pretrained two-branch model trusts each Dynamic World label of a store.

    python -m benchmark.audit --weights runs/cromss/checkpoints/last.ckpt --data demo-data --split nol

For every labelled pixel and season the trust is the cross-modal confidence CromSS selects by
(docs/method.md, "Confidences and entangling"): each branch's softmax probability of the noisy
label, entangled so that a branch keeps its confidence only where the other agrees, averaged over
the two branches. It is written into the split as ``dw_trust`` (sample, season, y, x; uint8 0–254
for trust 0–1, 255 where there is no label) through the build engine's add-an-array path, so an
audit that is stopped, even with ``kill -9``, continues where it was when run again. The index gets
per season ``dw_trust_mean_tN`` and ``dw_noise_est_tN``, an estimate of the noise rate: the share of
labels the model would change (the two branches' mean prediction is another class). On a store with
a ``truth`` the audit reports how well trust separates wrong labels from right ones (ROC AUC); on real
Dynamic World stores there is no truth and no AUC.
"""

from __future__ import annotations

import argparse
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from benchmark.cromss.selection import entangle, label_confidence
from benchmark.cromss.truth_metrics import judged
from benchmark.data import band_indices, encode
from benchmark.models import load_pretrained
from benchmark.runs import command, print_json, store_root
from benchmark.tasks import IGNORE
from noldo.build import BuildSpec, build
from noldo.errors import NoldoError
from noldo.regions import Candidate
from noldo.sources.base import Fetched, Option, Plan, Rejected, Source
from noldo.store import Split

SOURCE = "benchmark.audit:TrustSource"
SCALE = 254  # trust 1 is stored as 254; 255 is nodata


@lru_cache(maxsize=2)
def _model(weights: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    return load_pretrained(weights)


def trust(model: torch.nn.Module, s1: np.ndarray, s2: np.ndarray, labels: np.ndarray, bands: tuple[int, ...],
          normalization: str = "cromss") -> tuple[np.ndarray, np.ndarray]:
    """Trust in [0, 1] of every label of one sample, (seasons, y, x) from its stored arrays, NaN where unlabelled;
    and where the two branches' mean prediction is another class than the label."""
    x1 = torch.from_numpy(np.stack([encode(s, "s1", (0, 1), normalization) for s in s1]))
    x2 = torch.from_numpy(np.stack([encode(s[list(bands)], "s2", bands, normalization) for s in s2]))
    y = torch.from_numpy(labels.astype("int64"))
    height, width = labels.shape[-2:]
    pad = (0, -width % 32, 0, -height % 32)  # the U-Net needs sides divisible by 32
    with torch.inference_mode():
        logits1, logits2 = model(torch.nn.functional.pad(x1, pad, mode="reflect"),
                                 torch.nn.functional.pad(x2, pad, mode="reflect"))
    logits1, logits2 = logits1[..., :height, :width], logits2[..., :height, :width]
    a1, a2 = entangle(label_confidence(logits1, y), label_confidence(logits2, y))
    value = ((a1 + a2) / 2).numpy()
    relabelled = (torch.softmax(logits1, 1) + torch.softmax(logits2, 1)).argmax(1).numpy() != labels
    return np.where(labels == IGNORE, np.nan, value), relabelled & (labels != IGNORE)


class TrustSource(Source):
    """``dw_trust`` for the samples of an existing split, from a pretrained two-branch checkpoint."""

    name = "trust"
    arrays = ("dw_trust",)
    reads = ("s1", "s2", "dw")
    options = (Option("weights", click.Path(exists=True, dir_okay=False), None,
                      "a two-branch pretraining checkpoint of benchmark.cromss"),
               Option("normalization", click.Choice(["cromss", "ssl4eo"]), "cromss",
                      "the input encoding the model was pretrained with"))
    parallelism = 1  # torch uses every core for one sample
    command = ("python -m benchmark.audit --weights {weights} --data {root} --split {split} "
               "--normalization {normalization}")

    def __init__(self, weights: str | None = None, normalization: str = "cromss", seed: int = 0, seasons: int = 4):
        if not weights:
            raise NoldoError("the audit needs --weights CHECKPOINT (a two-branch pretraining checkpoint)")
        self.weights, self.normalization = str(weights), normalization

    def check(self) -> None:
        _model(self.weights)  # fail before anything is written

    def plan(self, candidate: Candidate) -> Plan:
        missing = [name for name in self.reads if name not in candidate.given]
        if missing:
            raise Rejected(f"trust: the split has no {', '.join(missing)}")
        return Plan({}, None)

    def fetch(self, candidate: Candidate, plan: Plan, array: str) -> Fetched:
        model, hparams = _model(self.weights)
        given = candidate.given
        value, relabelled = trust(model, given["s1"], given["s2"], given["dw"], band_indices("s2", hparams["bands"]),
                                  self.normalization)
        stored = np.where(np.isnan(value), 255, np.rint(np.nan_to_num(value) * SCALE)).astype("uint8")
        meta = {}
        for t in range(value.shape[0]):
            labelled = ~np.isnan(value[t])
            meta[f"dw_trust_mean_t{t}"] = round(float(value[t][labelled].mean()), 4) if labelled.any() else None
            meta[f"dw_noise_est_t{t}"] = round(float(relabelled[t][labelled].mean()), 4) if labelled.any() else None
        return Fetched(stored, meta)

    def cost(self, candidate: Candidate, plan: Plan, arrays: tuple[str, ...]) -> tuple[int, dict[str, int]]:
        return 0, {"dw_trust": int(np.prod(candidate.given["dw"].shape))}


def roc_auc(trust_values: np.ndarray, wrong: np.ndarray) -> float:
    """ROC AUC of low trust as a detector of wrong labels (1: every wrong label trusted less than every right
    one; 0.5: no better than chance), from ranks, ties counted half."""
    from scipy.stats import rankdata

    wrong = wrong.astype(bool)
    positives, negatives = int(wrong.sum()), int((~wrong).sum())
    if not positives or not negatives:
        raise NoldoError("the ROC AUC needs both right and wrong labels")
    ranks = rankdata(-trust_values)  # low trust ranks high
    return float((ranks[wrong].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def evaluate(root: str | Path, split: str) -> dict[str, Any]:
    """Against the truth of a synthetic store: ROC AUC of trust for "label is wrong", the true noise rate and the
    index's estimate (seasonal snow left out, as in training: benchmark/cromss/truth_metrics.py)."""
    reader = Split.open(root, split)
    group = reader.group()
    if "truth" not in reader.layout.arrays:
        return {}
    values, wrong = [], []
    for start in range(0, reader.layout.samples, 64):
        stop = min(start + 64, reader.layout.samples)
        labels, truth = group["dw"][start:stop], group["truth"][start:stop][:, None]
        stored = group["dw_trust"][start:stop]
        valid = judged(torch.from_numpy(labels.astype("int64")), torch.from_numpy(truth.astype("int64"))).numpy()
        valid &= stored != 255
        values.append(stored[valid].astype("float32") / SCALE)
        wrong.append((labels != np.broadcast_to(truth, labels.shape))[valid])
    values, wrong = np.concatenate(values), np.concatenate(wrong)
    index = reader.index()
    estimate = index[[c for c in index.columns if c.startswith("dw_noise_est_t")]].to_numpy(dtype="float64")
    return {"roc_auc": round(roc_auc(values, wrong), 4), "noise_rate": round(float(wrong.mean()), 4),
            "noise_estimate": round(float(np.nanmean(estimate)), 4), "pixels": int(values.size)}


def audit(weights: str | Path, root: str | Path, split: str = "nol", normalization: str = "cromss",
          progress: bool = False) -> dict[str, Any]:
    """Write ``dw_trust`` into ``split`` of ``root`` (resumable) and evaluate it where the store has a truth."""
    spec = BuildSpec(None, SOURCE, split, options={"weights": str(Path(weights).resolve()),
                                                   "normalization": normalization}, extend=True)
    summary = build(spec, root, progress=progress)
    return {"build": summary, **evaluate(root, split)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, type=Path, help="two-branch pretraining checkpoint")
    parser.add_argument("--data", required=True, type=store_root, help="the store ROOT")
    parser.add_argument("--split", default="nol", help="the split to audit [nol]")
    parser.add_argument("--normalization", default="cromss", choices=("cromss", "ssl4eo"),
                        help="input encoding the model was pretrained with [cromss]")
    args = parser.parse_args(argv)
    command(lambda: audit(args.weights, args.data, args.split, args.normalization, progress=sys.stderr.isatty()),
            print_json)


if __name__ == "__main__":
    main()
