"""Render one sample of a store: S2 true colour, S1 VV, label maps with their official colours and legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from noldo import catalog
from noldo.errors import NoldoError
from noldo.location import RootLike
from noldo.store import Split

_S1_RANGE_DB = (-25.0, 0.0)
_TITLES = {"dw": "Dynamic World labels", "truth": "truth (simulated)", "osm": "OpenStreetMap land use"}


def true_colour(s2: np.ndarray, white: float = 3000.0) -> np.ndarray:
    """(13, H, W) L1C DN → (H, W, 3) RGB in [0, 1]: B4, B3, B2 scaled so ``white`` DN is white, gamma 1.3."""
    rgb = s2[[3, 2, 1]].astype("float32").transpose(1, 2, 0)
    return np.clip(rgb / white, 0, 1) ** (1 / 1.3)


def _rgb(hex_colour: str) -> list[float]:
    return [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]


def label_colours(labels: np.ndarray, legend: tuple[catalog.LandCoverClass, ...]) -> np.ndarray:
    """Class map → (H, W, 3) RGB with the legend's colours; values outside it get ``catalog.NODATA_COLOUR``."""
    lut = np.empty((256, 3), dtype="float32")
    lut[:] = _rgb(catalog.NODATA_COLOUR)
    for cls in legend:
        lut[cls.value] = _rgb(cls.colour)
    return lut[labels]


def plot_sample(root: RootLike, split: str = "nol", sample: str | int = 0, season: int | None = None):
    """A matplotlib Figure of one sample: a row per season (or only ``season``), label legends below.

    Example:
        >>> plot_sample("demo-data", "nol", 0).savefig("sample.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure  # no pyplot: no backend switch, nothing to close
    from matplotlib.patches import Patch

    reader = Split.open(root, split)
    i = reader.sample_index(sample)
    sample_id = reader.ids()[i]
    group = reader.group()
    names = [a for a, _ in group.arrays()]
    seasons = reader.season_names()
    if season is not None and not 0 <= season < len(seasons):
        raise NoldoError(f"season {season} is outside 0–{len(seasons) - 1} of split {split}")
    rows = [season] if season is not None else list(range(len(seasons)))
    per_season = [a for a in ("s2", "s1", "dw", "dw_trust", "s2_cloud") if a in names]
    static = [a for a in ("truth", "osm") if a in names]
    columns = len(per_season) + len(static)
    size = (max(3.2 * columns, 9.0), 3.5 * len(rows) + 1.2)
    fig = Figure(figsize=size)
    axes = fig.subplots(len(rows), columns, squeeze=False)
    lon, lat = float(group["center_lon"][i]), float(group["center_lat"][i])
    fig.suptitle(f"{sample_id} ({split}) at {lat:.4f}°, {lon:.4f}° · EPSG:{int(group['crs_epsg'][i])}")
    for r, t in enumerate(rows):
        for c, name in enumerate(per_season):
            data = group[name][i, t]
            ax = axes[r, c]
            if name == "s2":
                ax.imshow(true_colour(data))
                ax.set_title(f"S2 true colour · {seasons[t]}")
            elif name == "s2_cloud":
                score = np.ma.masked_equal(data, catalog.ARRAYS["s2_cloud"].nodata)
                ax.imshow(score, cmap="gray", vmin=0, vmax=100, interpolation="nearest")  # bright = clear
                if (score >= catalog.CLEAR_THRESHOLD).any() and (score < catalog.CLEAR_THRESHOLD).any():
                    ax.contour(score.filled(100), levels=[catalog.CLEAR_THRESHOLD], colors="#C4281B", linewidths=0.8)
                ax.set_title(f"cloud score, bright = clear (≥ {catalog.CLEAR_THRESHOLD} in red) · {seasons[t]}",
                             fontsize="small")
            elif name == "dw_trust":
                trust = np.ma.masked_equal(data, catalog.ARRAYS["dw_trust"].nodata)
                ax.imshow(trust, cmap="RdYlGn", vmin=0, vmax=254, interpolation="nearest")
                ax.set_title(f"label trust, green = trusted · {seasons[t]}", fontsize="small")
            elif name == "s1":
                ax.imshow(np.nan_to_num(data[0], nan=_S1_RANGE_DB[0]), cmap="gray", vmin=_S1_RANGE_DB[0],
                          vmax=_S1_RANGE_DB[1])
                ax.set_title(f"S1 VV (dB) · {seasons[t]}")
            else:
                ax.imshow(label_colours(data, catalog.ARRAY_LEGENDS[name]), interpolation="nearest")
                ax.set_title(f"{_TITLES[name]} · {seasons[t]}")
        for c, name in enumerate(static, start=len(per_season)):
            ax = axes[r, c]
            if r == 0:
                ax.imshow(label_colours(group[name][i], catalog.ARRAY_LEGENDS[name]), interpolation="nearest")
                ax.set_title(_TITLES[name])
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_axis_off()
    legends = {"Dynamic World": catalog.DW_CLASSES} if {"dw", "truth"} & set(names) else {}
    if "osm" in names:
        legends["OpenStreetMap"] = catalog.OSM_CLASSES
    handles = [Patch(color=cls.colour, label=f"{cls.value} {cls.name}") for legend in legends.values()
               for cls in legend]
    handles.append(Patch(color=catalog.NODATA_COLOUR, label="nodata / no label"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize="small", frameon=False)
    legend_inches = 0.2 + 0.22 * -(-len(handles) // 5)
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1 - 0.4 / fig.get_figheight()))
    return fig


def save_plot(root: RootLike, split: str, sample: str | int, season: int | None, out: Path) -> Path:
    """Render a sample to a PNG file."""
    fig = plot_sample(root, split, sample, season)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out
