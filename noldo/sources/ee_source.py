"""The ``earthengine`` source: S2 L1C, S1 GRD and Dynamic World for each season of a sample, on its grid.

Per sample: one ``listImages`` per collection covering all seasons at once, the scene choice on the
returned metadata, then one ``computePixels`` per modality for all seasons (split only when the
request-size guard says so).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import numpy as np

from noldo.catalog import SEASONS
from noldo.encodings import EXPERT_DW
from noldo.errors import NoldoError
from noldo.regions import Candidate
from noldo.sources import dynamic_world, earthengine, sentinel1, sentinel2
from noldo.sources.base import Fetched, Option, Plan, Rejected, Source, in_parallel
from noldo.sources.scenes import Scene, footprint, iso, season_windows

_MODULES = {"s2": sentinel2, "s1": sentinel1, "dw": dynamic_world}
_BANDS = {"s2": sentinel2.BANDS, "s1": sentinel1.BANDS, "dw": (dynamic_world.BAND,)}
_NODATA = {"s2": sentinel2.NODATA, "s1": np.nan, "dw": dynamic_world.NODATA}


def read_scene_table(path: str) -> dict[str, tuple[str, ...]]:
    """The NoL id table (``ids, sub1, sub2, sub3, sub4``: location id and the S2 ``system:index`` per season)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NoldoError(f"cannot read scene table {path}: {exc}") from None
    columns = ["sub1", "sub2", "sub3", "sub4"]
    if not rows or not {"ids", *columns} <= set(rows[0]):
        raise NoldoError(f"scene table {path} needs the columns ids,sub1,sub2,sub3,sub4 (dw_complete_ids.csv)")
    table = {}
    for row in rows:
        ident = row["ids"].strip()
        table[f"{int(ident):07d}" if ident.isdigit() else ident] = tuple(row[c].strip() for c in columns)
    return table


def _index_date(index: str) -> datetime:
    """The acquisition day encoded at the start of an S2 ``system:index`` (``20200418T...``)."""
    try:
        return datetime.strptime(index[:8], "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        raise NoldoError(f"{index!r} is not a Sentinel-2 system:index (YYYYMMDDT..._T..)") from None


class EarthEngineSource(Source):
    """NoLDO-S12 samples from Google Earth Engine; the options are declared in ``options`` below.

    Args:
        seed, seasons: from the build (4 seasons for ``nol``).
    """

    name = "earthengine"
    arrays = ("s2", "s1", "dw")
    requests = ("listImages", "computePixels")
    parallel_fetch = True  # the modalities of a sample are independent requests
    options = (
        Option("max_cloud", click.FloatRange(0, 100), 20.0,
               "S2 scenes need CLOUDY_PIXEL_PERCENTAGE below this (SSL4EO-S12: 20)."),
        Option("allow_missing", click.BOOL, False, "keep samples lacking a modality in a season, with nodata there."),
        Option("scenes", click.Path(exists=True, dir_okay=False), None,
               "rebuild published samples from a NoL id table (ids,sub1..sub4 = S2 system:index per season); use "
               "with --region LOCATIONS.csv."),
        Option("season_dates", click.STRING, None, "replace the SSL4EO-S12 season reference dates (D0,D1,D2,D3)."),
        Option("jitter", click.BOOL, True, "apply the per-location day offset of the SSL4EO-S12 recipe."),
        Option("labels", click.Path(exists=True, file_okay=False), None,
               "with --tiles: a folder of expert label GeoTIFFs (dw_<tile>.tif, values 0 unlabelled, 1–9 classes, "
               "10 cloud) used as the dw array."),
        Option("ee_project", click.STRING, None, "the Cloud project registered for Earth Engine.",
               env=earthengine.ENV_PROJECT, runtime=True),
        Option("ee_url", click.STRING, None, "API endpoint [default: the high-volume endpoint].",
               env=earthengine.ENV_URL, runtime=True),
        Option("ee_concurrency", click.IntRange(1, earthengine.MAX_CONCURRENCY), earthengine.DEFAULT_CONCURRENCY,
               f"concurrent requests, at most the per-project quota of {earthengine.MAX_CONCURRENCY}.",
               env=earthengine.ENV_CONCURRENCY, runtime=True),
    )

    def __init__(self, seed: int = 0, seasons: int = 4, max_cloud: float = 20.0, allow_missing: bool = False,
                 scenes: str | None = None, season_dates: str | None = None, jitter: bool = True,
                 labels: str | None = None, ee_project: str | None = None, ee_url: str | None = None,
                 ee_concurrency: int | None = None):
        self.settings = earthengine.settings_from(ee_project, ee_url, ee_concurrency)
        self.labels = ExpertLabels(labels) if labels else None
        self.parallelism = self.settings.concurrency
        self.max_cloud, self.allow_missing, self.jitter = max_cloud, allow_missing, jitter
        indices = range(len(SEASONS)) if seasons == len(SEASONS) else (2,)
        self.reference_dates = [SEASONS[s].reference_date for s in indices]
        if season_dates:
            dates = [d.strip() for d in season_dates.split(",")]
            try:
                [datetime.fromisoformat(d) for d in dates]
            except ValueError:
                raise NoldoError(f"--season-dates must be ISO dates, got {season_dates!r}") from None
            if len(dates) != len(self.reference_dates):
                raise NoldoError(f"--season-dates needs {len(self.reference_dates)} dates, got {len(dates)}")
            self.reference_dates = dates
        self.scene_table = read_scene_table(scenes) if scenes else None

    def check(self) -> None:
        """Initialise Earth Engine now, so bad credentials or a wrong --ee-url fail before anything is written."""
        earthengine.initialize(self.settings)

    def _windows(self, candidate: Candidate) -> list[tuple[datetime, datetime]]:
        if candidate.date is not None:  # a downstream tile: ±15 days around its label date
            day = datetime.fromisoformat(candidate.date).replace(tzinfo=UTC)
            return [(day - timedelta(days=15), day + timedelta(days=15))]
        if self.scene_table is not None:
            wanted = self.scene_table.get(candidate.key)
            if wanted is None:
                raise Rejected(f"scenes: no row for location {candidate.key} in the scene table")
            return [(d, d + timedelta(days=1)) for d in map(_index_date, wanted[: len(self.reference_dates)])]
        offset = candidate.day_offset if self.jitter else 0
        return season_windows(offset, reference_dates=self.reference_dates)

    def plan(self, candidate: Candidate) -> Plan:
        """Search the three collections once and choose the scenes of every season."""
        sample = footprint(candidate.grid)
        windows = self._windows(candidate)
        span = (min(w[0] for w in windows), max(w[1] for w in windows))
        s1_span = (span[0] - timedelta(days=15), span[1] + timedelta(days=15)) if self.scene_table else span
        s2_scenes, dw_scenes, s1_scenes = in_parallel(
            lambda: sentinel2.search(self.settings, sample, span, self.max_cloud),
            lambda: dynamic_world.search(self.settings, sample, span) if self.labels is None else {},
            lambda: sentinel1.search(self.settings, sample, s1_span))
        if candidate.date is not None:  # tiles keep to their own UTM zone; labels come from files
            s2_scenes = [s for s in s2_scenes if s.epsg == candidate.grid.epsg]
        labelled = [s for s in s2_scenes if s.index in dw_scenes] if self.labels is None else s2_scenes
        chosen: dict[str, list[Scene | None]] = {"s2": [], "s1": [], "dw": []}
        meta: dict[str, Any] = {"day_offset": candidate.day_offset if self.jitter else 0}
        for t, window in enumerate(windows):
            if candidate.date is not None:
                label_day = window[0] + (window[1] - window[0]) / 2
                s2 = sentinel2.pick_near(s2_scenes, window, label_day)
                missing_s2 = (f"s2: no scene under {self.max_cloud:g}% cloud in EPSG:{candidate.grid.epsg} within "
                              f"15 days of {candidate.date}")
            elif self.scene_table is not None:
                index = self.scene_table[candidate.key][t]
                s2 = next((s for s in s2_scenes if s.index == index), None)
                missing_s2 = f"s2: published scene {index} not found (or over {self.max_cloud:g}% cloud)"
            else:
                s2 = sentinel2.pick(labelled, window, candidate.grid.epsg)
                s2 = s2 or (sentinel2.pick(s2_scenes, window, candidate.grid.epsg) if self.allow_missing else None)
                missing_s2 = (f"s2: no scene under {self.max_cloud:g}% cloud with a Dynamic World image in season "
                              f"t{t} ({window[0]:%Y-%m-%d} – {window[1]:%Y-%m-%d})")
            dw = (dw_scenes.get(s2.index) if s2 else None) if self.labels is None else self.labels.find(candidate)
            target = s2.time if s2 else window[0] + (window[1] - window[0]) / 2
            s1_window = (target - timedelta(days=15), target + timedelta(days=15)) if self.scene_table else window
            s1 = sentinel1.pick(s1_scenes, s1_window, target)
            missing_dw = (f"labels: no file for tile {candidate.key} under --labels" if self.labels
                          else f"dw: no Dynamic World image for {s2.index if s2 else '-'}")
            for name, scene, reason in (("s2", s2, missing_s2), ("dw", dw, missing_dw),
                                        ("s1", s1, f"s1: no IW scene with VV and VH in season t{t}")):
                if scene is None and not self.allow_missing:
                    raise Rejected(reason)
                chosen[name].append(scene)
                meta[f"{name}_id_t{t}"] = scene.index if scene else None
                meta[f"{name}_time_t{t}"] = iso(scene.time) if scene else None
            meta[f"s2_cloud_pct_t{t}"] = s2.properties.get("CLOUDY_PIXEL_PERCENTAGE") if s2 else None
            meta[f"s2_epsg_t{t}"] = s2.epsg if s2 else None
            meta[f"s2_baseline_t{t}"] = s2.properties.get("PROCESSING_BASELINE") if s2 else None
            meta[f"s1_pass_t{t}"] = s1.properties.get("orbitProperties_pass") if s1 else None
        return Plan(meta, chosen)

    def fetch(self, candidate: Candidate, plan: Plan, array: str) -> Fetched:
        """All seasons of one modality in one computePixels request (split only by the size guard)."""
        if array == "dw" and self.labels is not None:
            return self.labels.read(plan.context["dw"][0], candidate)
        scenes = plan.context[array]
        bands = _BANDS[array]
        grid = candidate.grid
        out = np.full((len(scenes), len(bands), *grid.shape), _NODATA[array], dtype=_MODULES[array].DTYPE)
        present = [(t, s) for t, s in enumerate(scenes) if s is not None]
        if present:
            earthengine.initialize(self.settings)
            names = [f"t{t}_{b}" for t, _ in present for b in bands]
            expression = _MODULES[array].expression([s for _, s in present], names)
            data = earthengine.compute_pixels(self.settings, expression, names, grid, _MODULES[array].DTYPE)
            for i, (t, _) in enumerate(present):
                out[t] = data[i * len(bands):(i + 1) * len(bands)]
        if array == "s1":
            out[out == sentinel1.MASKED] = np.nan
            valid = np.isfinite(out).all(axis=1)
        elif array == "s2":
            valid = (out != sentinel2.NODATA).all(axis=1)
        else:
            out = out[:, 0]
            valid = out != dynamic_world.NODATA
        meta = {f"{array}_valid_t{t}": round(float(valid[t].mean()), 4) for t in range(len(scenes))}
        return Fetched(out, meta)

    def cost(self, candidate: Candidate, plan: Plan, array: str) -> tuple[int, int]:
        """computePixels requests and bytes that :meth:`fetch` would make (for ``--dry-run``)."""
        if array == "dw" and self.labels is not None:
            return 0, candidate.grid.height * candidate.grid.width
        bands = len(_BANDS[array]) * sum(s is not None for s in plan.context[array])
        if not bands:
            return 0, 0
        itemsize = np.dtype(_MODULES[array].DTYPE).itemsize
        blocks = earthengine.split_request(*candidate.grid.shape, itemsize, bands)
        return len(blocks), bands * candidate.grid.height * candidate.grid.width * itemsize


class ExpertLabels:
    """Dynamic World expert label GeoTIFFs (``--labels DIR``), found by tile name anywhere below DIR.

    Their encoding (0 unlabelled, 1–9 the classes, 10 cloud) becomes ours through
    :data:`noldo.encodings.EXPERT_DW`: value − 1 for the classes, 255 for unlabelled and cloud.
    """

    def __init__(self, directory: str) -> None:
        root = Path(directory)
        if not root.is_dir():
            raise NoldoError(f"--labels {directory} is not a directory")
        self.files = {p.stem.removeprefix("dw_"): p for p in sorted(root.rglob("*.tif"))}

    def find(self, candidate: Candidate) -> Scene | None:
        path = self.files.get(candidate.key)
        if path is None:
            return None
        return Scene(str(path), datetime.fromisoformat(candidate.date or "1970-01-01").replace(tzinfo=UTC),
                     candidate.grid.epsg, True)

    @staticmethod
    def read(label: Scene | None, candidate: Candidate) -> Fetched:
        """The tile's labels in our encoding; a file off the tile grid rejects the sample."""
        import rasterio

        grid = candidate.grid
        if label is None:
            return Fetched(np.full((1, *grid.shape), dynamic_world.NODATA, "uint8"), {"dw_valid_t0": 0.0})
        with rasterio.open(label.id) as src:
            if src.shape != grid.shape or (src.crs and src.crs.to_epsg() != grid.epsg) or \
                    not src.transform.almost_equals(grid.transform):
                raise Rejected(f"labels: {Path(label.id).name} is not on the tile grid (EPSG:{grid.epsg}, "
                               f"{grid.height}×{grid.width})")
            raw = src.read(1)
        labels = EXPERT_DW[np.clip(raw, 0, 255).astype("uint8")][None]
        return Fetched(labels, {"dw_valid_t0": round(float((labels != dynamic_world.NODATA).mean()), 4),
                                "dw_label_file": Path(label.id).name})
