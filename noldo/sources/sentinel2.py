"""Sentinel-2 L1C from ``COPERNICUS/S2_HARMONIZED``: scene search, choice and the pixel expression."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from noldo.catalog import S2_BANDS
from noldo.sources import earthengine
from noldo.sources.scenes import Scene, Window, choose, iso, parse_scenes

COLLECTION = "COPERNICUS/S2_HARMONIZED"
BANDS = tuple(b.name for b in S2_BANDS)
DTYPE = "uint16"
NODATA = 0


def search(settings: earthengine.EESettings, sample: dict[str, Any], span: Window, max_cloud: float) -> list[Scene]:
    """Scenes over the sample in ``span`` with ``CLOUDY_PIXEL_PERCENTAGE < max_cloud`` (filtered by the server)."""
    assets = earthengine.list_images(settings, COLLECTION, iso(span[0]), iso(span[1]), sample,
                                     [f"CLOUDY_PIXEL_PERCENTAGE < {max_cloud:g}"])
    return parse_scenes(assets, sample)


def pick(scenes: Sequence[Scene], window: Window, epsg: int) -> Scene | None:
    """The SSL4EO-S12 rule, made deterministic: the most recent scene in the window, preferring scenes
    that cover the whole sample and are in the sample grid's UTM zone (so no pixel is reprojected)."""
    return choose(scenes, window, lambda s: (s.covers, s.epsg == epsg, s.time, s.id))


def pick_near(scenes: Sequence[Scene], window: Window, day: datetime) -> Scene | None:
    """For a labelled tile: the scene closest to the label day, preferring full coverage and the days after
    it (the CromSS search looked at the 15 days after the label date first)."""
    return choose(scenes, window, lambda s: (s.covers, s.time >= day, -abs((s.time - day).total_seconds()), s.id))


def expression(scenes: Sequence[Scene], names: Sequence[str]):
    """13 bands per scene as uint16 DN, bilinear for the 20/60 m bands, masked pixels → 0, renamed to ``names``."""
    import ee

    layers = [ee.Image(s.id).select(list(BANDS)).resample("bilinear").unmask(NODATA).toUint16() for s in scenes]
    return ee.Image.cat(layers).rename(list(names))
