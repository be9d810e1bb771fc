"""The figure of the synthetic source's label model in CATALOG.md: where and why its labels go wrong.

    python -m noldo.noise_figure docs/synthetic-noise.png

One sample with a regional confusion and thin cloud or shadow: its S2 image, the truth, the Dynamic
World-like labels and their wrong pixels coloured by cause, in two seasons; beside it, over the first
40 accepted demo samples, the noise rate by cause and season and each class's share of correct labels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from noldo import catalog
from noldo.plot import label_colours, true_colour
from noldo.regions import candidates, parse_region
from noldo.sources.base import Rejected
from noldo.sources.synthetic import SyntheticSource
from noldo.sources.synthetic_labels import CAUSES

CAUSE_COLOURS = {"regional": "#d62728", "boundary": "#ff7f0e", "atmosphere": "#9467bd", "spectral": "#1f77b4"}
SAMPLES, TILE = 40, 128


def _samples(n: int) -> list[tuple]:
    """(plan, S2, labels, causes, index metadata) of the first ``n`` accepted demo samples."""
    source, found = SyntheticSource(seed=0), []
    for candidate in candidates(parse_region("demo"), seed=0, tile_size=TILE):
        try:
            plan = source.plan(candidate)
        except Rejected:
            continue
        labels, causes = source.labels_and_causes(candidate, plan)
        found.append((plan, source.fetch(candidate, plan, "s2").array, labels, causes,
                      source.fetch(candidate, plan, "dw").meta))
        if len(found) == n:
            return found
    raise AssertionError("the demo region has fewer accepted samples than the figure shows")


def _cause_image(labels: np.ndarray, causes: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W, 3): light grey where the label is right, the cause's colour where it is wrong, white if masked."""
    from matplotlib.colors import to_rgb

    image = np.full((*labels.shape, 3), 0.9, dtype="float32")
    for cause in CAUSES:
        image[causes[cause]] = to_rgb(CAUSE_COLOURS[cause])
    image[labels == 255] = 1.0
    return image


def render(out: Path) -> Path:
    """Write the figure to ``out`` (PNG) and return it."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    samples = _samples(SAMPLES)
    metas = [s[4] for s in samples]
    shown = max(range(len(samples)), key=lambda i: metas[i]["noise_regional_t0"] + min(
        0.1, max(metas[i][f"noise_atmosphere_t{t}"] for t in range(4))))  # both kinds in view, not all cloud
    plan, s2, labels, causes, meta = samples[shown]
    cloudiest = max(range(4), key=lambda t: meta[f"noise_atmosphere_t{t}"])
    seasons = sorted((cloudiest, (cloudiest + 2) % 4))
    legend = catalog.DW_CLASSES
    fig = Figure(figsize=(16, 7.8))
    grid = fig.add_gridspec(2, 6, width_ratios=[1, 1, 1, 1, 0.1, 1.6])
    for row, t in enumerate(seasons):
        panels = [(f"S2 true colour, season t{t}", true_colour(s2[t])), ("truth", label_colours(plan.context.truth,
                                                                                                 legend)),
                  (f"labels, t{t}: {100 * meta[f'noise_t{t}']:.0f} % wrong", label_colours(labels[t], legend)),
                  (f"wrong labels by cause, t{t}", _cause_image(labels[t], causes[t]))]
        for col, (title, image) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(image, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
    ax = fig.add_subplot(grid[0, 5])
    bottom = np.zeros(4)
    for cause in CAUSES:
        share = 100 * np.array([np.mean([m[f"noise_{cause}_t{t}"] for m in metas]) for t in range(4)])
        ax.bar([f"t{t}" for t in range(4)], share, bottom=bottom, color=CAUSE_COLOURS[cause], label=cause)
        bottom += share
    ax.set_ylabel("% of labelled pixels (snow excluded)", fontsize=8)
    ax.set_title(f"noise rate by cause and season, {len(metas)} demo samples", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    right, total = np.zeros(len(legend)), np.zeros(len(legend))
    for plan_i, _, labels_i, _, _ in samples:
        truth = plan_i.context.truth
        for t, season in enumerate(plan_i.context.seasons):
            counted = (labels_i[t] != 255) & ~season.snow
            np.add.at(total, truth[counted], 1)
            np.add.at(right, truth[counted & (labels_i[t] == truth)], 1)
    ax = fig.add_subplot(grid[1, 5])
    ax.barh([c.name for c in legend], 100 * right / np.maximum(total, 1), color=[c.colour for c in legend])
    ax.set_xlim(0, 100)
    ax.set_title("labelled correctly, % of each true class", fontsize=9)
    ax.tick_params(labelsize=8)
    fig.legend(handles=[Patch(color=c.colour, label=c.name) for c in legend], loc="lower center", ncol=9,
               fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.08, wspace=0.12, hspace=0.22)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out


if __name__ == "__main__":
    print(render(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/synthetic-noise.png")))
