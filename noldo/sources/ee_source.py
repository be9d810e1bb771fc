"""The ``earthengine`` source: S2 L1C, S1 GRD, Dynamic World and Cloud Score+ per season of a sample, on its grid.

Per sample: the scene listings of its place (shared by every sample of the same lattice cell, so a
regional build lists each collection a few times in all), the scene choice on the returned metadata
and footprints, then one ``computePixels`` for every modality and season at once (more only where
Earth Engine's size limits force it).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import click
import numpy as np
import shapely
from shapely.geometry import shape

from noldo.catalog import CLEAR_THRESHOLD, SEASONS
from noldo.errors import NoldoError
from noldo.grid import Grid, sample_grid
from noldo.regions import Candidate
from noldo.sources import cloud_score, dynamic_world, earthengine, ee_expressions, sentinel1, sentinel2
from noldo.sources.base import Fetched, Option, Plan, Rejected, Source, in_parallel
from noldo.sources.expert_labels import ExpertLabels
from noldo.sources.scenes import (
    Scene,
    campaign_span,
    coverage,
    coverages,
    footprint,
    granule_epsg,
    imaged_fraction,
    iso,
    listing_cell,
    listing_cell_region,
    season_windows,
    touching,
    within,
)

_NODATA = {"s2": sentinel2.NODATA, "s1": np.nan, "dw": dynamic_world.NODATA, "s2_cloud": cloud_score.NODATA}


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


def _search(settings: earthengine.EESettings, region: dict[str, Any], span: tuple[datetime, datetime],
            s1_span: tuple[datetime, datetime], max_cloud: float, with_dw: bool, share: Any) -> tuple:
    """The four listings of a region, requested concurrently (shared by the samples asking for ``share``)."""
    return tuple(in_parallel(
        lambda: sentinel2.search(settings, region, span, max_cloud, share),
        lambda: dynamic_world.search(settings, region, span, share) if with_dw else {},
        lambda: sentinel1.search(settings, region, s1_span, share),
        lambda: cloud_score.search(settings, region, span, share)))


@lru_cache(maxsize=earthengine.SHARED_LISTINGS // 4)
def _cell_listings(settings: earthengine.EESettings, cell: tuple[int, int], jitter: bool,
                   reference_dates: tuple[str, ...], max_cloud: float, with_dw: bool) -> tuple:
    """The four listings of a lattice cell, kept together: a sample in a cell already listed starts no thread."""
    span = campaign_span(reference_dates, jitter)
    return _search(settings, listing_cell_region(cell), span, span, max_cloud, with_dw,
                   (cell, jitter, reference_dates))


def _share(mask: np.ndarray) -> float:
    """The share of True in a mask, to 4 decimals (the mean of the mask, counted)."""
    return round(np.count_nonzero(mask) / mask.size, 4)


def _index_date(index: str) -> datetime:
    """The acquisition day encoded at the start of an S2 ``system:index`` (``20200418T...``)."""
    try:
        return datetime.strptime(index[:8], "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        raise NoldoError(f"{index!r} is not a Sentinel-2 system:index (YYYYMMDDT..._T..)") from None


class EarthEngineSource(Source):
    """NoLDO-S12 samples from Google Earth Engine; the options are declared in ``options`` below.

    Args:
        seed, seasons, processes, tag: from the build (``Source.context``).
    """

    name = "earthengine"
    arrays = ("s2", "s1", "dw", "s2_cloud")
    requests = ("listImages", "computePixels")
    context = ("seed", "seasons", "processes", "tag")
    options = (
        Option("max_cloud", click.FloatRange(0, 100), 20.0,
               "S2 scenes need CLOUDY_PIXEL_PERCENTAGE below this (SSL4EO-S12: 20)."),
        Option("allow_missing", click.BOOL, False, "keep samples lacking a modality in a season, with nodata there."),
        Option("allow_partial", click.BOOL, False,
               "keep samples that no scene covers whole in a season, with nodata where unimaged."),
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
               f"requests in flight for the whole build (all cluster workers together), at most the per-project "
               f"quota of {earthengine.MAX_CONCURRENCY}.", env=earthengine.ENV_CONCURRENCY, runtime=True),
        Option("ee_rate", click.FloatRange(0, min_open=True), earthengine.DEFAULT_RATE,
               "requests per second for the whole build (every listing page counts), at most the project's quota.",
               env=earthengine.ENV_RATE, runtime=True),
        Option("ee_combine", click.BOOL, True,
               "one pixel request for all modalities of a sample (more only where the size limits force it); "
               "--no-ee-combine asks one per modality.", runtime=True),
    )

    def __init__(self, seed: int = 0, seasons: int = 4, max_cloud: float = 20.0, allow_missing: bool = False,
                 allow_partial: bool = False, scenes: str | None = None, season_dates: str | None = None,
                 jitter: bool = True, labels: str | None = None, ee_project: str | None = None,
                 ee_url: str | None = None, ee_concurrency: int | None = None, ee_rate: float | None = None,
                 ee_combine: bool = True, processes: int = 0, tag: str | None = None):
        self.settings = earthengine.settings_from(ee_project, ee_url, ee_concurrency, rate=ee_rate,
                                                  processes=processes, tag=tag)
        self.labels = ExpertLabels(labels) if labels else None
        self.parallelism = self.settings.concurrency
        self.max_cloud, self.allow_missing, self.allow_partial = max_cloud, allow_missing, allow_partial
        self.jitter, self.combine = jitter, ee_combine
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

    def grid(self, candidate: Candidate) -> Grid:
        """A published location keeps the UTM zone of its published granule (no scene is reprojected)."""
        row = self.scene_table.get(candidate.key) if self.scene_table else None
        epsg = granule_epsg(row[0]) if row else None
        if epsg is None or epsg == candidate.grid.epsg:
            return candidate.grid
        return sample_grid(candidate.lon, candidate.lat, candidate.grid.height, epsg=epsg)

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

    def _listings(self, candidate: Candidate, sample: dict[str, Any], windows: list[tuple[datetime, datetime]]):
        """(S2 scenes, DW by index, S1 passes, Cloud Score+ by index) for a sample, searched concurrently.

        Seasonal samples share the listings of their lattice cell over every day the recipe can reach;
        tiles and published scenes list their own footprint and days.
        """
        with_dw = self.labels is None
        if candidate.date is None and self.scene_table is None:
            cell = listing_cell(candidate.lon, candidate.lat)[0]
            return _cell_listings(self.settings, cell, self.jitter, tuple(self.reference_dates), self.max_cloud,
                                  with_dw)
        span = (min(w[0] for w in windows), max(w[1] for w in windows))
        s1_span = (span[0] - timedelta(days=15), span[1] + timedelta(days=15)) if self.scene_table else span
        return _search(self.settings, sample, span, s1_span, self.max_cloud, with_dw, None)

    def plan(self, candidate: Candidate) -> Plan:
        """Search the collections and choose the scenes of every season."""
        earthengine.initialize(self.settings)  # in the task's own thread: a cluster quota needs the worker's context
        grid = candidate.grid
        sample = footprint(grid)
        geometry = shape(sample)
        shapely.prepare(geometry)
        windows = self._windows(candidate)
        s2_all, dw_scenes, s1_all, cs_scenes = self._listings(candidate, sample, windows)
        margin = timedelta(days=15)  # an S1 pass may be matched to an S2 scene up to 15 days away
        s2_scenes = touching(within(s2_all, windows), geometry)
        s1_scenes = touching(within(s1_all, windows, margin), geometry)
        covered = dict(zip([s.id for s in s2_scenes + s1_scenes], coverages(s2_scenes + s1_scenes, geometry),
                           strict=True))  # every choice below weighs these; others (DW) are added when asked

        def cover(scene: Scene) -> float:
            if scene.id not in covered:
                covered[scene.id] = coverage(scene, geometry)
            return covered[scene.id]

        if candidate.date is not None:  # tiles keep to their own UTM zone; labels come from files
            s2_scenes = [s for s in s2_scenes if s.epsg == grid.epsg]
        labelled = [s for s in s2_scenes if s.index in dw_scenes] if self.labels is None else s2_scenes
        chosen: dict[str, list[Scene | None]] = {"s2": [], "s1": [], "dw": [], "s2_cloud": []}
        meta: dict[str, Any] = {"day_offset": candidate.day_offset if self.jitter else 0}
        for t, window in enumerate(windows):
            s2, missing_s2 = self._pick_s2(candidate, t, window, s2_scenes, labelled, cover)
            dw = (dw_scenes.get(s2.index) if s2 else None) if self.labels is None else self.labels.find(candidate)
            target = s2.time if s2 else window[0] + (window[1] - window[0]) / 2
            s1_window = (target - timedelta(days=15), target + timedelta(days=15)) if self.scene_table else window
            s1 = sentinel1.pick(s1_scenes, s1_window, target, cover)
            missing_dw = (f"labels: no file for tile {candidate.key} under --labels" if self.labels
                          else f"dw: no Dynamic World image for {s2.index if s2 else '-'}")
            for name, scene, reason in (("s2", s2, missing_s2), ("dw", dw, missing_dw),
                                        ("s1", s1, f"s1: no IW scene with VV and VH in season t{t}")):
                if scene is None and not self.allow_missing:
                    raise Rejected(reason)
                if scene is not None and cover(scene) < 1 and not self.allow_partial:
                    raise Rejected(f"{name}: no scene covers the sample in season t{t}")
                chosen[name].append(scene)
            chosen["s2_cloud"].append(cs_scenes.get(s2.index) if s2 else None)
            for name, scenes in chosen.items():
                scene = scenes[t]
                meta[f"{name}_id_t{t}"] = scene.label if scene else None
                if name != "s2_cloud":  # the score shares its S2 scene's time
                    meta[f"{name}_time_t{t}"] = iso(scene.time) if scene else None
                meta[f"{name}_imaged_t{t}"] = imaged_fraction(scene, grid, geometry)
            meta[f"s2_cloud_pct_t{t}"] = s2.properties.get("CLOUDY_PIXEL_PERCENTAGE") if s2 else None
            meta[f"s2_epsg_t{t}"] = s2.epsg if s2 else None
            meta[f"s2_baseline_t{t}"] = s2.properties.get("PROCESSING_BASELINE") if s2 else None
            meta[f"s1_pass_t{t}"] = s1.properties.get("orbitProperties_pass") if s1 else None
        return Plan(meta, chosen)

    def _pick_s2(self, candidate: Candidate, t: int, window, s2_scenes, labelled, cover) -> tuple[Scene | None, str]:
        """The S2 scene of season ``t`` and the rejection reason should there be none."""
        if candidate.date is not None:
            label_day = window[0] + (window[1] - window[0]) / 2
            return (sentinel2.pick_near(s2_scenes, window, label_day, cover),
                    f"s2: no scene under {self.max_cloud:g}% cloud in EPSG:{candidate.grid.epsg} within 15 days of "
                    f"{candidate.date}")
        if self.scene_table is not None:
            index = self.scene_table[candidate.key][t]
            return (next((s for s in s2_scenes if s.index == index), None),
                    f"s2: published scene {index} not found (or over {self.max_cloud:g}% cloud)")
        s2 = sentinel2.pick(labelled, window, candidate.grid.epsg, cover)
        s2 = s2 or (sentinel2.pick(s2_scenes, window, candidate.grid.epsg, cover) if self.allow_missing else None)
        return s2, (f"s2: no scene under {self.max_cloud:g}% cloud with a Dynamic World image in season t{t} "
                    f"({window[0]:%Y-%m-%d} – {window[1]:%Y-%m-%d})")

    def _layers(self, plan: Plan, array: str) -> list[ee_expressions.Layer]:
        return [(array, t, scene.assets) for t, scene in enumerate(plan.context[array]) if scene is not None]

    def fetch(self, candidate: Candidate, plan: Plan, array: str) -> Fetched:
        return self.fetch_many(candidate, plan, (array,))[array]

    def fetch_many(self, candidate: Candidate, plan: Plan, arrays: tuple[str, ...]) -> dict[str, Fetched]:
        """Every season of the ``arrays`` in one computePixels request (or one per array with --no-ee-combine;
        split only by the size limits), each array in its own dtype, nodata where there is no scene."""
        from_files = "dw" in arrays and self.labels is not None
        wanted = [a for a in arrays if not (a == "dw" and from_files)]
        groups = [wanted] if self.combine else [[a] for a in wanted]
        pixels: dict[str, np.ndarray] = {}
        for group in groups:
            layers = [layer for array in group for layer in self._layers(plan, array)]
            if layers:
                expression, bands = ee_expressions.request(layers)
                pixels |= earthengine.compute_pixels(self.settings, expression, bands, candidate.grid)
        result = {array: self._assemble(array, plan, pixels, candidate.grid) for array in wanted}
        if from_files:
            result["dw"] = self.labels.read(plan.context["dw"][0], candidate)
        return result

    @staticmethod
    def _assemble(array: str, plan: Plan, pixels: dict[str, np.ndarray], grid: Grid) -> Fetched:
        """One array (seasons, bands, y, x) from the answered bands; nodata, valid and clear-sky shares."""
        module = ee_expressions.MODALITIES[array]
        scenes = plan.context[array]
        out = np.full((len(scenes), len(module.BANDS), *grid.shape), _NODATA[array], dtype=module.DTYPE)
        for t, scene in enumerate(scenes):
            if scene is not None:
                for b, name in enumerate(ee_expressions.band_names(array, t)):
                    out[t, b] = pixels[name]
        if array == "s1":
            out[out == sentinel1.MASKED] = np.nan
            valid = np.isfinite(out).all(axis=1)
        elif array == "s2":
            valid = (out != sentinel2.NODATA).all(axis=1)
        else:
            out = out[:, 0]
            valid = out != _NODATA[array]
        meta = {f"{array}_valid_t{t}": _share(valid[t]) for t in range(len(scenes))}
        if array == "s2_cloud":
            clear = (out != cloud_score.NODATA) & (out >= CLEAR_THRESHOLD)
            meta |= {f"s2_clear_t{t}": _share(clear[t]) for t in range(len(scenes))}
        return Fetched(out, meta)

    def cost(self, candidate: Candidate, plan: Plan, arrays: tuple[str, ...]) -> tuple[int, dict[str, int]]:
        """computePixels requests and bytes per array that :meth:`fetch_many` would take (for ``--dry-run``)."""
        grid = candidate.grid
        sizes: dict[str, list[int]] = {}
        for array in arrays:
            if array == "dw" and self.labels is not None:
                continue
            itemsize = np.dtype(ee_expressions.MODALITIES[array].DTYPE).itemsize
            sizes[array] = [itemsize] * sum(len(ee_expressions.MODALITIES[array].BANDS) for _ in
                                            self._layers(plan, array))
        groups = [[s for a in sizes for s in sizes[a]]] if self.combine else list(sizes.values())
        requests = sum(len(earthengine.split_request(*grid.shape, g)) for g in groups if g)
        per_array = {a: sum(sizes.get(a, [])) * grid.height * grid.width for a in arrays}
        if "dw" in arrays and self.labels is not None:
            per_array["dw"] = grid.height * grid.width
        return requests, per_array
