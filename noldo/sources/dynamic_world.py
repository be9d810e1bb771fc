"""Dynamic World V1 labels: the image with the same ``system:index`` as the chosen S2 scene."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from noldo.sources import earthengine
from noldo.sources.scenes import Scene, Window, iso, parse_scenes

COLLECTION = "GOOGLE/DYNAMICWORLD/V1"
BAND = "label"
DTYPE = "uint8"
NODATA = 255


def search(settings: earthengine.EESettings, sample: dict[str, Any], span: Window) -> dict[str, Scene]:
    """Dynamic World images over the sample in ``span``, by ``system:index``."""
    assets = earthengine.list_images(settings, COLLECTION, iso(span[0]), iso(span[1]), sample)
    return {s.index: s for s in parse_scenes(assets, sample)}


def expression(scenes: Sequence[Scene], names: Sequence[str]):
    """The ``label`` band (0–8, nearest neighbour) with masked pixels set to 255 before download, so a
    cloud-masked pixel can never come back as class 0 (water)."""
    import ee

    layers = [ee.Image(s.id).select([BAND]).unmask(NODATA).toUint8() for s in scenes]
    return ee.Image.cat(layers).rename(list(names))
