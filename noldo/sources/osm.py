"""OpenStreetMap land-use labels: 13 osmlanduse classes from OSM polygons, rasterised on a sample's grid.

Polygons only (points and lines are dropped), geometries repaired and reprojected to the grid's UTM
zone, classified with the tag table of :mod:`noldo.catalog`, burned large first so that small nested
features (a pond in a park in a residential area) win, ties broken by class priority, with the
pixel-centre rule. 0 = no OSM land use, 1–13 the classes. OSM data is © OpenStreetMap contributors
(ODbL).
"""

from __future__ import annotations

from typing import Any

import click
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from noldo.catalog import OSM_CLASSES, OSM_PRIORITY, OSM_TAG_RULES
from noldo.encodings import OSM_TO_DW
from noldo.grid import Grid
from noldo.regions import Candidate
from noldo.sources.base import Fetched, Option, Plan, Source
from noldo.sources.osm_features import ENV_OVERPASS, PUBLIC_OVERPASS, check_extract, from_extract, from_overpass

QUERY_BUFFER_M = 100  # features are queried around the tile, so polygons crossing its edge are whole
_RANK = {cls: rank for rank, cls in enumerate(OSM_PRIORITY)}


def classify(features: gpd.GeoDataFrame) -> np.ndarray:
    """The class (1–13) of each feature by the first matching tag rule in priority order; 0 if none."""
    classes = np.zeros(len(features), dtype="uint8")
    for key, value, cls in sorted(OSM_TAG_RULES, key=lambda rule: _RANK[rule[2]]):
        if key in features.columns:
            match = (features[key].astype("string") == value).fillna(False).to_numpy() & (classes == 0)
            classes[match] = cls
    return classes


def polygons_on_grid(features: gpd.GeoDataFrame, grid: Grid) -> gpd.GeoDataFrame:
    """Classified, repaired polygons in the grid's CRS with their area, in burn order (last burned wins)."""
    if features.empty:
        return gpd.GeoDataFrame({"cls": [], "area": []}, geometry=[], crs=grid.crs)
    classes = classify(features)
    keep = classes > 0
    frame = gpd.GeoDataFrame({"cls": classes[keep]}, geometry=features.geometry.to_numpy()[keep], crs=features.crs)
    frame = frame.to_crs(grid.crs)
    frame["geometry"] = shapely.make_valid(frame.geometry.to_numpy())
    frame = frame.explode(index_parts=False)
    frame = frame[frame.geom_type.isin(("Polygon", "MultiPolygon"))]
    frame["area"] = frame.area
    frame = frame[frame["area"] > 0]
    order = np.lexsort((-np.array([_RANK[c] for c in frame["cls"]]), -frame["area"].to_numpy()))
    return frame.iloc[order]


def rasterize(polygons: gpd.GeoDataFrame, grid: Grid) -> np.ndarray:
    """Burn classified polygons onto the grid (pixel-centre rule, later shapes win); uint8, 0 = no label."""
    from rasterio.features import rasterize as burn

    if polygons.empty:
        return np.zeros(grid.shape, dtype="uint8")
    return burn(zip(polygons.geometry, polygons["cls"].astype(int), strict=True), out_shape=grid.shape,
                transform=grid.transform, fill=0, all_touched=False, dtype="uint8")


def quality(osm: np.ndarray, dw: np.ndarray | None) -> dict[str, float]:
    """OSM coverage (labelled fraction) and, where DW labels exist, the share of pixels labelled in both
    whose OSM class maps to the DW class (every season of ``dw`` counts)."""
    labelled = osm > 0
    result = {"osm_coverage": round(float(labelled.mean()), 4), "osm_agreement": float("nan")}
    if dw is not None:
        dw = dw.reshape(-1, *osm.shape)
        both = labelled[None] & (dw != 255)
        if both.any():
            result["osm_agreement"] = round(float((OSM_TO_DW[osm][None] == dw)[both].mean()), 4)
    return result


def query_bounds(grid: Grid) -> tuple[float, float, float, float]:
    """The lon/lat box to fetch features for a grid: its bounds plus a margin."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = grid.bounds
    b = QUERY_BUFFER_M
    return transform_bounds(grid.crs, "EPSG:4326", left - b, bottom - b, right + b, top + b, densify_pts=21)


class OsmSource(Source):
    """The ``osm`` source: land-use labels from a local extract (``osm_file``) or Overpass.

    The labels are made while planning (one query per sample), so fetching costs nothing more. A
    sample whose labels miss ``min_coverage`` (or, when adding ``osm`` to a split that has Dynamic
    World labels, ``min_agreement``) fails the quality check: rejected from a new split, flagged
    (``osm_qc``) in an existing one.
    """

    name = "osm"
    arrays = ("osm",)
    requests = ("overpass",)
    reads = ("dw",)
    options = (
        Option("osm_file", click.Path(exists=True, dir_okay=False), None,
               "a local extract (.osm, .osm.bz2, .osm.pbf) instead of Overpass; pixels outside it are 0."),
        Option("overpass_url", click.STRING, None, "a private Overpass API [default: the public one].",
               env=ENV_OVERPASS, runtime=True),
        Option("min_coverage", click.FloatRange(0, 1), 0.0, "samples need at least this labelled fraction."),
        Option("min_agreement", click.FloatRange(0, 1), 0.0,
               "samples need at least this share of pixels whose OSM class agrees with Dynamic World "
               "(osm_qc in the index).", extends_only=True),
    )

    def __init__(self, osm_file: str | None = None, overpass_url: str | None = None, min_coverage: float = 0.0,
                 min_agreement: float = 0.0, seed: int = 0, seasons: int = 1):
        self.osm_file = str(check_extract(osm_file)) if osm_file else None
        self.overpass_url = overpass_url or PUBLIC_OVERPASS
        self.min_coverage, self.min_agreement = min_coverage, min_agreement

    def check(self) -> None:
        """Read the extract now, so a bad file fails before anything is written."""
        if self.osm_file:
            from_extract(self.osm_file, (0.0, 0.0, 0.0, 0.0))

    def features(self, grid: Grid) -> gpd.GeoDataFrame:
        bounds = query_bounds(grid)
        return from_extract(self.osm_file, bounds) if self.osm_file else from_overpass(self.overpass_url, bounds)

    def labels(self, grid: Grid) -> tuple[np.ndarray, dict[str, Any]]:
        """The label raster of a grid and how many polygons made it."""
        polygons = polygons_on_grid(self.features(grid), grid)
        return rasterize(polygons, grid), {"osm_polygons": len(polygons)}

    def plan(self, candidate: Candidate) -> Plan:
        osm, meta = self.labels(candidate.grid)
        meta |= quality(osm, candidate.given.get("dw"))
        failure = None
        if meta["osm_coverage"] < self.min_coverage:
            failure = f"osm: coverage {meta['osm_coverage']:.0%} below --min-coverage {self.min_coverage:.0%}"
        elif self.min_agreement and not meta["osm_agreement"] >= self.min_agreement:
            failure = (f"osm: agreement with Dynamic World {meta['osm_agreement']:.0%} below --min-agreement "
                       f"{self.min_agreement:.0%}")
        return Plan(meta, osm, failure)

    def fetch(self, candidate: Candidate, plan: Plan, array: str) -> Fetched:
        return Fetched(plan.context)

    def cost(self, candidate: Candidate, plan: Plan, arrays: tuple[str, ...]) -> tuple[int, dict[str, int]]:
        """No request (the labels were made while planning); one byte per pixel."""
        return 0, {name: candidate.grid.height * candidate.grid.width for name in arrays}


def class_histogram(osm: np.ndarray) -> pd.Series:
    """Pixel share per OSM class name (no label included), for reports and tests."""
    counts = np.bincount(osm.ravel(), minlength=14)
    names = ["no OSM land use", *(c.name for c in OSM_CLASSES)]
    return pd.Series(counts / counts.sum(), index=names)
