"""The expression of a pixel request: each modality's layer per season, concatenated, serialised once.

A sample's request depends on which scenes it uses only through their asset ids, so the graph of each
request shape (which modalities, seasons and slice counts) is built and serialised once per process
with placeholder ids; a request then only substitutes its ids into the serialised text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from noldo.sources import cloud_score, dynamic_world, earthengine, sentinel1, sentinel2

#: Each array's collection module: ``BANDS``, ``DTYPE`` and ``layer(asset_ids)``.
MODALITIES = {"s2": sentinel2, "s1": sentinel1, "dw": dynamic_world, "s2_cloud": cloud_score}
_PLACEHOLDER = "@noldo-asset-{}@"

#: One layer of a request: the array, its season and the asset ids of the scene (several: an S1 pass).
Layer = tuple[str, int, tuple[str, ...]]


def band_names(array: str, season: int) -> list[str]:
    """The request's band ids for one array and season, e.g. ``s2_t0_B4``."""
    return [f"{array}_t{season}_{band}" for band in MODALITIES[array].BANDS]


def request(layers: Sequence[Layer]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The serialised expression of a request and its bands as (band id, dtype)."""
    shape = tuple((array, season, len(assets)) for array, season, assets in layers)
    text = _template(shape)
    ids = [asset for _, _, assets in layers for asset in assets]
    for k, asset in enumerate(ids):
        text = text.replace(json.dumps(_PLACEHOLDER.format(k)), json.dumps(asset))
    bands = [(name, MODALITIES[array].DTYPE) for array, season, _ in layers for name in band_names(array, season)]
    return json.loads(text), bands


@lru_cache(maxsize=128)
def _template(shape: tuple[tuple[str, int, int], ...]) -> str:
    import ee

    images, names, k = [], [], 0
    for array, season, parts in shape:
        images.append(MODALITIES[array].layer([_PLACEHOLDER.format(k + p) for p in range(parts)]))
        names += band_names(array, season)
        k += parts
    return json.dumps(earthengine.serialize(ee.Image.cat(images).rename(names)))
