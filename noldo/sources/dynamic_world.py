"""Dynamic World V1 labels: the image with the same ``system:index`` as the chosen S2 scene."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from noldo.sources import earthengine
from noldo.sources.scenes import Scene, Window, by_index, iso

COLLECTION = "GOOGLE/DYNAMICWORLD/V1"
BAND = "label"
BANDS = (BAND,)
DTYPE = "uint8"
NODATA = 255


def search(settings: earthengine.EESettings, region: dict[str, Any], span: Window,
           share: Any = None) -> dict[str, Scene]:
    """Dynamic World images over ``region`` in ``span``, by ``system:index``."""
    return earthengine.list_images(settings, COLLECTION, iso(span[0]), iso(span[1]), region, (), share, by_index)


def layer(assets: Sequence[str]):
    """The ``label`` band (0–8, nearest neighbour), 255 wherever the image has no label: masked (cloud) and
    outside its footprint (``sameFootprint=False``), so nodata can never come back as class 0 (water)."""
    import ee

    return ee.Image(assets[0]).select([BAND]).unmask(NODATA, False).toUint8()
