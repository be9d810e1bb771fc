"""The expression of a pixel request: each modality's layer per season, concatenated, serialised once.

A sample's request depends on which scenes it uses only through their asset ids, so the graph of each
request shape (which modalities, seasons and slice counts) is built and serialised once per process
with placeholder ids; a request then only joins its ids into the pieces of that text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache

from noldo.sources import cloud_score, dynamic_world, earthengine, sentinel1, sentinel2

#: Each array's collection module: ``BANDS``, ``DTYPE`` and ``layer(asset_ids)``.
MODALITIES = {"s2": sentinel2, "s1": sentinel1, "dw": dynamic_world, "s2_cloud": cloud_score}
_PLACEHOLDER = "@noldo-asset-{}@"

#: One layer of a request: the array, its season and the asset ids of the scene (several: an S1 pass).
Layer = tuple[str, int, tuple[str, ...]]


def band_names(array: str, season: int) -> list[str]:
    """The request's band ids for one array and season, e.g. ``s2_t0_B4``."""
    return [f"{array}_t{season}_{band}" for band in MODALITIES[array].BANDS]


def request(layers: Sequence[Layer]) -> tuple[str, list[tuple[str, str]]]:
    """The serialised expression of a request (JSON text) and its bands as (band id, dtype)."""
    shape = tuple((array, season, len(assets)) for array, season, assets in layers)
    pieces, order = _template(shape)
    ids = [json.dumps(asset) for _, _, assets in layers for asset in assets]
    text = [pieces[0]]
    for k, piece in zip(order, pieces[1:], strict=True):
        text += (ids[k], piece)
    bands = [(name, MODALITIES[array].DTYPE) for array, season, _ in layers for name in band_names(array, season)]
    return "".join(text), bands


@lru_cache(maxsize=128)
def _template(shape: tuple[tuple[str, int, int], ...]) -> tuple[list[str], list[int]]:
    """The serialised graph of a request shape cut at its placeholders, and the asset each cut takes."""
    import ee

    images, names, k = [], [], 0
    for array, season, parts in shape:
        images.append(MODALITIES[array].layer([_PLACEHOLDER.format(k + p) for p in range(parts)]))
        names += band_names(array, season)
        k += parts
    text = json.dumps(earthengine.serialize(ee.Image.cat(images).rename(names)), separators=(",", ":"))
    cut = re.split(r'"@noldo-asset-(\d+)@"', text)
    return cut[0::2], [int(k) for k in cut[1::2]]
