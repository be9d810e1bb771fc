"""Sentinel-1 GRD from ``COPERNICUS/S1_GRD``: IW passes with VV and VH, closest in time to the S2 scene.

A GRD pass is cut into slices of about 25 s; the slices of one pass (same platform and datatake)
are one acquisition, mosaicked, so a sample on a slice boundary is whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from noldo.sources import earthengine
from noldo.sources.scenes import Scene, Window, choose, iso, merge_passes, parse_scenes

COLLECTION = "COPERNICUS/S1_GRD"
BANDS = ("VV", "VH")
DTYPE = "float32"
MASKED = -9999.0  # what unimaged pixels are unmasked to on the server; turned into NaN here


def search(settings: earthengine.EESettings, region: dict[str, Any], span: Window,
           share: Any = None) -> list[Scene]:
    """IW passes over ``region`` in ``span`` that carry both VV and VH, their slices merged.

    The server filters the instrument mode; the polarisation list cannot be filtered by listImages,
    so it is checked on the returned metadata.
    """
    return earthengine.list_images(settings, COLLECTION, iso(span[0]), iso(span[1]), region,
                                   ['instrumentMode = "IW"'], share, dual_passes)


def dual_passes(assets: list[dict[str, Any]]) -> list[Scene]:
    """The passes of the listed slices that carry both VV and VH."""
    dual = [s for s in parse_scenes(assets)
            if set(BANDS) <= set(s.properties.get("transmitterReceiverPolarisation") or ())]
    return merge_passes(dual)


def pick(scenes: Sequence[Scene], window: Window, target: datetime, covered: Callable[[Scene], float]) -> Scene | None:
    """The pass closest in time to ``target`` (the S2 acquisition), preferring full coverage (then the larger
    share of the sample)."""
    return choose(scenes, window, lambda s: (covered(s) >= 1, covered(s), -abs((s.time - target).total_seconds()),
                                             s.id))


def layer(assets: Sequence[str]):
    """VV and VH σ⁰ in dB of one pass (its slices mosaicked), bilinear, ``MASKED`` wherever unimaged
    (``sameFootprint=False``); the cast to float32 comes last, whatever type the server promotes to."""
    import ee

    images = [ee.Image(a).select(list(BANDS)).resample("bilinear") for a in assets]
    image = images[0] if len(images) == 1 else ee.ImageCollection(images).mosaic()
    return image.unmask(MASKED, False).toFloat()
