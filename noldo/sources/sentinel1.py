"""Sentinel-1 GRD from ``COPERNICUS/S1_GRD``: IW scenes with VV and VH, closest in time to the S2 scene."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from noldo.sources import earthengine
from noldo.sources.scenes import Scene, Window, choose, iso, parse_scenes

COLLECTION = "COPERNICUS/S1_GRD"
BANDS = ("VV", "VH")
DTYPE = "float32"
MASKED = -9999.0  # what masked pixels are unmasked to on the server; turned into NaN here


def search(settings: earthengine.EESettings, sample: dict[str, Any], span: Window) -> list[Scene]:
    """IW scenes over the sample in ``span`` that carry both VV and VH.

    The server filters the instrument mode; the polarisation list cannot be filtered by listImages,
    so it is checked on the returned metadata.
    """
    assets = earthengine.list_images(settings, COLLECTION, iso(span[0]), iso(span[1]), sample,
                                     ['instrumentMode = "IW"'])
    return [s for s in parse_scenes(assets, sample)
            if set(BANDS) <= set(s.properties.get("transmitterReceiverPolarisation") or ())]


def pick(scenes: Sequence[Scene], window: Window, target: datetime) -> Scene | None:
    """The scene closest in time to ``target`` (the S2 acquisition), preferring full coverage."""
    return choose(scenes, window, lambda s: (s.covers, -abs((s.time - target).total_seconds()), s.id))


def expression(scenes: Sequence[Scene], names: Sequence[str]):
    """VV and VH σ⁰ in dB as float32, bilinear, masked pixels → ``MASKED``, renamed to ``names``."""
    import ee

    layers = [ee.Image(s.id).select(list(BANDS)).resample("bilinear").toFloat().unmask(MASKED) for s in scenes]
    return ee.Image.cat(layers).rename(list(names))
