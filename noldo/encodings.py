"""Label encodings of the published files and of OpenStreetMap, as lookup tables onto ours (CATALOG.md, "Legends").

Every table maps a raw uint8 value to our value, 255 (nodata) where the raw value has no class.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from noldo import catalog

NODATA = 255


def lookup(values: Mapping[int, int]) -> np.ndarray:
    """A 256-entry uint8 table: raw value → ours; every other value → 255."""
    table = np.full(256, NODATA, dtype="uint8")
    for raw, ours in values.items():
        table[raw] = ours
    return table


#: Expert Dynamic World label files: 0 unlabelled, 1–9 the classes, 10 cloud → 0–8, 255.
EXPERT_DW = lookup({v: v - 1 for v in range(1, 10)})
#: DFC2020 (simplified IGBP) → the 8 trainable Dynamic World classes; savanna and snow → 255.
DFC_TO_DW = lookup({c.value: c.dw_value for c in catalog.DFC2020_CLASSES if c.dw_value is not None})
#: OSM land-use classes 1–13 → the Dynamic World class each maps to; 0 (no OSM land use) → 255.
OSM_TO_DW = lookup({c.value: c.dw_value for c in catalog.OSM_CLASSES})
#: How the OSM rasters of the published zips may be read: our order, or the CromSS README figure's.
OSM_ORDERS = {"noldo": lookup({v: v for v in range(14)}),
              "readme": lookup({0: 0, **{i + 1: ours for i, ours in enumerate(catalog.OSM_README_ORDER)}})}
