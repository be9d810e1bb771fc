"""The sample index as GeoParquet 1.1: each sample's lon/lat footprint, and its acquisition times.

``ROOT/<split>.parquet`` holds one row per sample (row i = sample i) with the columns the sources record,
a ``geometry`` column (the footprint of the sample's grid in EPSG:4326, split at the antimeridian where
it crosses it) and the ``bbox`` covering column of GeoParquet 1.1 (CATALOG.md, "Sample index").
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon, box

from noldo.grid import Grid, lonlat_transformer

#: Columns the index gets from its grids; recomputed whenever the index is written.
GEO_COLUMNS = ("geometry", "bbox")

#: Points per grid side when its outline is projected to lon/lat (UTM edges are curves in lon/lat).
FOOTPRINT_POINTS = 16


def footprint(grid: Grid) -> Polygon | MultiPolygon:
    """The lon/lat outline of a grid; a grid crossing the antimeridian gives two polygons, one each side.

    Example:
        >>> from noldo.grid import sample_grid
        >>> footprint(sample_grid(179.99, 10.0)).geom_type
        'MultiPolygon'
    """
    return footprints([grid])[0]


def footprints(grids: Sequence[Grid], points: int = FOOTPRINT_POINTS) -> list[Polygon | MultiPolygon]:
    """The lon/lat outlines of many grids, projected zone by zone in one call each."""
    steps = np.linspace(0.0, 1.0, points, endpoint=False)
    ring_x = np.concatenate([steps, np.ones(points), 1.0 - steps, np.zeros(points)])  # fractions of the width
    ring_y = np.concatenate([np.zeros(points), steps, np.ones(points), 1.0 - steps])  # of the height, from the top
    out: list[Polygon | MultiPolygon | None] = [None] * len(grids)
    by_zone: dict[int, list[int]] = {}
    for i, grid in enumerate(grids):
        by_zone.setdefault(grid.epsg, []).append(i)
    for epsg, members in by_zone.items():
        xs, ys = np.empty((len(members), ring_x.size)), np.empty((len(members), ring_x.size))
        for row, i in enumerate(members):
            left, bottom, right, top = grids[i].bounds
            xs[row], ys[row] = left + (right - left) * ring_x, top - (top - bottom) * ring_y
        lon, lat = (np.asarray(v) for v in lonlat_transformer(epsg).transform(xs, ys))
        for row, i in enumerate(members):
            out[i] = _outline(lon[row], lat[row])
    return out


def _outline(lon: np.ndarray, lat: np.ndarray) -> Polygon | MultiPolygon:
    if lon.max() - lon.min() <= 180.0:
        return Polygon(np.column_stack([lon, lat]))
    shifted = Polygon(np.column_stack([np.where(lon < 0, lon + 360.0, lon), lat]))
    west = shifted.intersection(box(-180.0, -90.0, 180.0, 90.0))
    east = shapely.affinity.translate(shifted.intersection(box(180.0, -90.0, 540.0, 90.0)), xoff=-360.0)
    return MultiPolygon([west, east])


def acquisition_times(frame: pd.DataFrame, seasons: int) -> np.ndarray:
    """Acquisition time of each sample's Sentinel-2 scene per season, ``datetime64[s]`` (sample, season), UTC.

    Taken from ``s2_time_tN`` (the scene time Earth Engine reports), else from the sensing start in the
    scene id ``s2_id_tN`` (``20200420T103021_20200420T103531_T31UFU``, as converted stores record it), else,
    for sources that record only a day, ``date_tN`` (noon UTC); NaT where a season has no scene.
    """
    out = np.full((len(frame), seasons), np.datetime64("NaT"), dtype="datetime64[s]")
    for t in range(seasons):
        for column in (f"s2_time_t{t}", f"s2_id_t{t}", f"date_t{t}"):
            if column not in frame.columns:
                continue
            text = frame[column].astype("string")
            if column.startswith("s2_id"):
                text = text.str.extract(r"(\d{8}T\d{6})", expand=False)
            times = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601" if "time" in column else
                                   "%Y%m%dT%H%M%S" if "id" in column else "%Y-%m-%d")
            if column.startswith("date_"):
                times = times + pd.Timedelta(hours=12)
            found = times.dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
            out[:, t] = np.where(np.isnat(out[:, t]), found, out[:, t])
    return out


def geo_index(frame: pd.DataFrame, grids: Sequence[Grid]):
    """The index as a :class:`geopandas.GeoDataFrame`: ``frame``'s columns in order, plus the footprints."""
    import geopandas as gpd

    if len(frame) != len(grids):
        raise ValueError(f"{len(frame)} index rows for {len(grids)} grids")
    table = frame.drop(columns=[c for c in GEO_COLUMNS if c in frame.columns]).reset_index(drop=True)
    return gpd.GeoDataFrame(table, geometry=footprints(grids), crs="EPSG:4326")


def geoparquet_bytes(frame: pd.DataFrame, grids: Sequence[Grid]) -> bytes:
    """The index as GeoParquet 1.1 bytes: footprints in ``geometry`` (WKB) and the ``bbox`` covering column."""
    buffer = io.BytesIO()
    geo_index(frame, grids).to_parquet(buffer, index=False, schema_version="1.1.0", write_covering_bbox=True)
    return buffer.getvalue()
