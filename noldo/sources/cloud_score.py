"""Cloud Score+ for Sentinel-2 (``GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED``): the image with the same
``system:index`` as the chosen S2 scene, band ``cs_cdf`` stored as round(100 × cs_cdf)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from noldo.sources import earthengine
from noldo.sources.scenes import Scene, Window, by_index, iso

COLLECTION = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
BAND = "cs_cdf"
BANDS = (BAND,)
DTYPE = "uint8"
NODATA = 255


def search(settings: earthengine.EESettings, region: dict[str, Any], span: Window,
           share: Any = None) -> dict[str, Scene]:
    """Cloud Score+ images over ``region`` in ``span``, by ``system:index``."""
    return earthengine.list_images(settings, COLLECTION, iso(span[0]), iso(span[1]), region, (), share, by_index)


def layer(assets: Sequence[str]):
    """``cs_cdf`` (0 = not clear … 1 = clear) as uint8 0–100, 255 wherever there is no score (masked, or outside
    the footprint); the cast comes last."""
    import ee

    return ee.Image(assets[0]).select([BAND]).multiply(100).round().unmask(NODATA, False).toUint8()
