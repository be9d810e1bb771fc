"""Sentinel-2 L1C from ``COPERNICUS/S2_HARMONIZED``: scene search, choice and the pixel expression."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from noldo.catalog import S2_BANDS
from noldo.sources import earthengine
from noldo.sources.scenes import Scene, Window, choose, iso, parse_scenes

COLLECTION = "COPERNICUS/S2_HARMONIZED"
BANDS = tuple(b.name for b in S2_BANDS)
DTYPE = "uint16"
NODATA = 0


def search(settings: earthengine.EESettings, region: dict[str, Any], span: Window, max_cloud: float,
           share: Any = None) -> list[Scene]:
    """Scenes over ``region`` in ``span`` with ``CLOUDY_PIXEL_PERCENTAGE < max_cloud`` (filtered by the server)."""
    return earthengine.list_images(settings, COLLECTION, iso(span[0]), iso(span[1]), region,
                                   [f"CLOUDY_PIXEL_PERCENTAGE < {max_cloud:g}"], share, parse_scenes)


def pick(scenes: Sequence[Scene], window: Window, epsg: int, covered: Callable[[Scene], float]) -> Scene | None:
    """The SSL4EO-S12 rule, made deterministic: the most recent scene in the window, preferring scenes
    that cover the whole sample (then the larger share of it) and are in the sample grid's UTM zone (so
    no pixel is reprojected)."""
    return choose(scenes, window, lambda s: (covered(s) >= 1, s.epsg == epsg, covered(s), s.time, s.id))


def pick_near(scenes: Sequence[Scene], window: Window, day: datetime,
              covered: Callable[[Scene], float]) -> Scene | None:
    """For a labelled tile: the scene closest to the label day, preferring full coverage and the days after
    it (the CromSS search looked at the 15 days after the label date first)."""
    return choose(scenes, window, lambda s: (covered(s) >= 1, covered(s), s.time >= day,
                                             -abs((s.time - day).total_seconds()), s.id))


def layer(assets: Sequence[str]):
    """13 bands of one scene as uint16 DN, bilinear for the 20/60 m bands, nodata 0 wherever the scene has no
    valid pixel (masked, or outside its footprint: ``sameFootprint=False``); the cast comes last."""
    import ee

    return ee.Image(assets[0]).select(list(BANDS)).resample("bilinear").unmask(NODATA, False).toUint16()
