"""The cost of CromSS per training step, and how well its selection sees through label noise.

    python -m benchmark.perf.cromss_step [--batch 8] [--size 128] [--encoder resnet50] [--repeats 7]
                                         [--run RUN_DIR] [--json out.json]

Part 1 times one optimiser step of the same two-branch U-Net on the same batch with the plain
supervised loss (CE + Dice per branch on hard labels) and with the full CromSS loss (selection,
smoothing, consistency), taking turns; then the two losses alone on fixed logits, whose difference
over the plain step is the CromSS overhead (whole-step timings on a shared CPU vary by more).
Part 2 reads a pretraining run on a synthetic store (``--run``, e.g. the demo run) and prints, per
epoch, the share of correct noisy labels among the pixels the selection keeps at full weight,
against the base rate of all pixels.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch

from benchmark.cromss import cromss_loss
from benchmark.models import TwoBranchUNet
from benchmark.perf.common import report


def step_seconds(net: TwoBranchUNet, batch: dict, losses: dict, repeats: int) -> dict[str, float]:
    """Median seconds of one optimiser step per loss; the losses take turns so drift hits both alike."""
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    times: dict[str, list[float]] = {name: [] for name in losses}
    for i in range(repeats + 1):
        for name, loss_fn in losses.items():
            started = time.perf_counter()
            optimiser.zero_grad()
            l1, l2 = net(batch["s1"], batch["s2"])
            loss_fn(l1, l2).backward()
            optimiser.step()
            if i:  # the first round warms up
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def loss_seconds(batch: dict, losses: dict, repeats: int) -> dict[str, float]:
    """Median seconds of the loss alone (forward and backward on fixed logits)."""
    n, _, h, w = batch["s2"].shape
    times: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(repeats):
        for name, loss_fn in losses.items():
            l1 = torch.randn(n, 9, h, w, requires_grad=True)
            l2 = torch.randn(n, 9, h, w, requires_grad=True)
            started = time.perf_counter()
            loss_fn(l1, l2).backward()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--run", type=Path, default=None, help="a pretraining run folder on a synthetic store")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    n, s = args.batch, args.size
    batch = {"s1": torch.rand(n, 2, s, s), "s2": torch.rand(n, 13, s, s), "label": torch.randint(0, 9, (n, s, s)),
             "prior": torch.softmax(torch.randn(n, 9, s, s), dim=1)}
    net = TwoBranchUNet("mid", encoder=args.encoder)
    plain_cfg = {"selection": False, "smoothing": False, "consistency": False}
    losses = {"plain": lambda a, b: cromss_loss(a, b, batch["label"], None, 40, plain_cfg)["total"],
              "cromss": lambda a, b: cromss_loss(a, b, batch["label"], batch["prior"], 40)["total"]}
    step = step_seconds(net, batch, losses, args.repeats)
    loss = loss_seconds(batch, losses, args.repeats)
    overhead = (loss["cromss"] - loss["plain"]) / step["plain"]
    rows = [("plain two-branch step (CE + Dice)", f"{step['plain']:.2f}", "1.00×"),
            ("CromSS step (selection + smoothing + consistency)", f"{step['cromss']:.2f}",
             f"{step['cromss'] / step['plain']:.3f}×"),
            ("loss alone: plain", f"{loss['plain']:.3f}", f"{loss['plain'] / step['plain']:.3f}×"),
            ("loss alone: CromSS", f"{loss['cromss']:.3f}", f"{loss['cromss'] / step['plain']:.3f}×"),
            ("CromSS overhead (loss difference / plain step)", f"{loss['cromss'] - loss['plain']:.3f}",
             f"{overhead:.1%}")]
    report("cromss_step", ("", "seconds (median)", "vs plain step"), rows, args.json if args.run is None else None,
           batch=n, size=s, encoder=args.encoder)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nA CromSS step consumes {n / step['cromss']:.1f} samples/s ({s}×{s}, batch {n}); peak RSS of this "
          f"process {peak:.0f} MB. Compare with the loader's samples/s (python -m benchmark.perf.loader).")
    if args.run is not None:
        import pandas as pd

        table = pd.read_csv(args.run / "metrics.csv")
        per_epoch = table.dropna(subset=["kept_precision_s2"]).groupby("epoch")[
            ["labels_right", "kept_precision_s2", "weight_l_s2"]].mean()
        precision = [(int(e), f"{r.labels_right:.3f}", f"{r.kept_precision_s2:.3f}",
                      f"{r.kept_precision_s2 - r.labels_right:+.3f}", f"{r.weight_l_s2:.2f}")
                     for e, r in per_epoch.iterrows()]
        print()
        report("selection_precision", ("epoch", "correct labels, all pixels", "correct labels, weight-1 pixels",
                                        "gain", "mean weight"), precision, args.json, step=rows)


if __name__ == "__main__":
    main()
