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
# # 02 · Build NoLDO-S12 samples from Earth Engine
#
# `noldo build --source earthengine` fetches, for each sample location, Sentinel-2 L1C,
# Sentinel-1 GRD and Dynamic World labels for four seasons from Google Earth Engine, on the
# sample's own 10 m UTM grid, and writes them to a Zarr store. This notebook does the same from
# Python, step by step: authenticate, choose a region, estimate the requests and the quota a build
# needs, build a few samples and look at where every pixel came from.
#
# **What you need**: a Google Cloud project registered for Earth Engine, and credentials, either
#
# * your own: run `earthengine authenticate` once in a terminal (stored user credentials), or
# * a service account: set `NOLDO_EE_SERVICE_ACCOUNT_KEY=/path/to/key.json` before starting Jupyter.
#
# Set `NOLDO_EE_PROJECT` (or `PROJECT` below) to the Cloud project. Without credentials the
# `initialize` cell stops with a one-line message saying what to do.
#
# When `NOLDO_EE_URL` is set, every request goes to that endpoint instead of Google's: the tests
# run this notebook against noldo's loopback Earth Engine server (`noldo.testing.earthengine`),
# which speaks the same REST protocol with simulated images.

# %% tags=["parameters"]
import os
from pathlib import Path

PROJECT = os.environ.get("NOLDO_EE_PROJECT", "my-cloud-project")  # your Earth Engine Cloud project
REGION = "11.30,48.00,11.50,48.15"   # W,S,E,N in degrees: part of Munich; or a place name, GeoJSON, CSV
SAMPLES = 4                          # samples to build
OUT = Path("../munich-ee")           # the store this notebook writes

# %%
import math

import matplotlib.pyplot as plt
import pandas as pd
import shapely

import noldo
from noldo.build import BuildSpec, build, plan_build
from noldo.plot import plot_sample
from noldo.regions import candidates, capacity, parse_region
from noldo.sources import earthengine

# %% [markdown]
# ## Authenticate
#
# Settings come from arguments first, then the `NOLDO_EE_*` environment variables. Builds use the
# high-volume endpoint by default; `concurrency` is how many requests run at once (at most 40, the
# per-project quota of concurrent requests).

# %%
settings = earthengine.settings_from(PROJECT)
print(f"endpoint    {settings.url}\nproject     {settings.project}\nconcurrency {settings.concurrency}\n"
      f"credentials {settings.key_file or 'stored user or application-default credentials'}")
earthengine.initialize(settings)

# %% [markdown]
# ## Choose a region
#
# Sample centres are drawn uniformly inside the region, at least 1.98 km apart (the SSL4EO-S12
# rule), deterministically for a seed. Each sample is a 264×264 pixel tile (2.64 km) on the UTM grid
# of its centre.

# %%
region = parse_region(REGION)
print(f"{region.area_km2():.0f} km², room for about {capacity(region)} samples")
first = [c for _, c in zip(range(2 * SAMPLES), candidates(region, seed=0), strict=False)]

fig, ax = plt.subplots(figsize=(6, 5))
ax.plot(*region.geometry.exterior.xy, color="black", label="region")
for i, c in enumerate(first):
    west, south, east, north = c.grid.lonlat_bounds()
    ax.plot(*shapely.box(west, south, east, north).exterior.xy, color="tab:blue" if i < SAMPLES else "tab:gray")
    ax.annotate(str(i), (c.lon, c.lat), ha="center", va="center", fontsize=8)
ax.set_xlabel("longitude (°)")
ax.set_ylabel("latitude (°)")
ax.set_title("first candidates: blue are built first, grey replace rejected ones")
ax.set_aspect(1 / math.cos(math.radians(region.geometry.centroid.y)))

# %% [markdown]
# ## Estimate requests, bytes and quota
#
# A dry run searches the scenes of every candidate (cheap `listImages` calls), picks the
# least-cloudy scene per season, rejects candidates without one, and counts the pixel requests
# (`computePixels`) and bytes the build would fetch. It fetches no pixels and writes nothing.

# %%
spec = BuildSpec(REGION, "earthengine", "nol", SAMPLES, seed=0, runtime={"ee_project": PROJECT})
plan = plan_build(spec)
per_sample = plan["pixel_requests"] / max(plan["samples"], 1)
pd.Series({"samples": plan["samples"], "rejected candidates": plan["rejected"]["total"],
           "search requests": sum(plan["search_requests"].values()),
           "pixel requests": plan["pixel_requests"], "pixel requests per sample": per_sample,
           "MB of pixels": round(plan["pixel_bytes"] / 1e6, 1)})

# %% [markdown]
# Earth Engine meters concurrent requests per project (40 by default) and compute time (EECU).
# With a typical 1–3 s per `computePixels` request, the time of a large build follows from the
# request count and the concurrency:

# %%
scale = pd.DataFrame({"samples": [SAMPLES, 1_000, 10_000, 100_000]})
scale["pixel requests"] = (scale["samples"] * per_sample).round().astype(int)
scale["GB"] = (scale["samples"] * plan["pixel_bytes"] / max(plan["samples"], 1) / 1e9).round(2)
for concurrency in (16, 40):
    scale[f"hours at {concurrency} × 2 s"] = (scale["pixel requests"] * 2.0 / concurrency / 3600).round(2)
scale

# %% [markdown]
# ## Build
#
# The same call as `noldo build --region ... --source earthengine --out OUT`. It is resumable: run
# the cell again after an interruption and it continues where it stopped. Failed requests are
# retried with exponential backoff (429, 5xx, connection errors); a sample whose answer is wrong
# (shape, dtype, missing scene) is rejected with a recorded reason, never written.

# %%
summary = build(spec, OUT)
{k: summary[k] for k in ("samples", "rejected", "requests", "seconds") if k in summary}

# %%
noldo.verify(OUT)[0] or "verified: every file matches its sha256"

# %% [markdown]
# ## Where every pixel came from
#
# The sample index holds one row per sample: its location and grid, and per season the scene ids,
# acquisition times and cloud cover of the Sentinel-2, Sentinel-1 and Dynamic World images used.
# The split's attributes record the command, the noldo version and the source settings.

# %%
index = pd.read_parquet(OUT / "nol.parquet")
print(sorted(index.columns))
index.filter(regex="^(sample|lon|lat|epsg)$|_t0").T

# %%
noldo.open(OUT, "nol").attrs["provenance"]

# %%
plot_sample(OUT, "nol", sample=0)
