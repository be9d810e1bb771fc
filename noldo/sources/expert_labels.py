"""Dynamic World expert label GeoTIFFs (``noldo build --tiles ... --labels DIR``) as the ``dw`` array of a tile."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from noldo.encodings import EXPERT_DW
from noldo.errors import NoldoError
from noldo.regions import Candidate
from noldo.sources.base import Fetched, Rejected
from noldo.sources.dynamic_world import NODATA
from noldo.sources.scenes import Scene


class ExpertLabels:
    """Expert label GeoTIFFs found by tile name anywhere below a folder.

    Their encoding (0 unlabelled, 1–9 the classes, 10 cloud) becomes ours through
    :data:`noldo.encodings.EXPERT_DW`: value − 1 for the classes, 255 for unlabelled and cloud.
    """

    def __init__(self, directory: str) -> None:
        root = Path(directory)
        if not root.is_dir():
            raise NoldoError(f"--labels {directory} is not a directory")
        self.files = {p.stem.removeprefix("dw_"): p for p in sorted(root.rglob("*.tif"))}

    def find(self, candidate: Candidate) -> Scene | None:
        """The label file of a tile as a scene (no footprint: it covers its tile), or None."""
        path = self.files.get(candidate.key)
        if path is None:
            return None
        return Scene(str(path), datetime.fromisoformat(candidate.date or "1970-01-01").replace(tzinfo=UTC),
                     candidate.grid.epsg)

    @staticmethod
    def read(label: Scene | None, candidate: Candidate) -> Fetched:
        """The tile's labels in our encoding; a file off the tile grid rejects the sample."""
        import rasterio

        grid = candidate.grid
        if label is None:
            return Fetched(np.full((1, *grid.shape), NODATA, "uint8"), {"dw_valid_t0": 0.0})
        with rasterio.open(label.id) as src:
            if src.shape != grid.shape or (src.crs and src.crs.to_epsg() != grid.epsg) or \
                    not src.transform.almost_equals(grid.transform):
                raise Rejected(f"labels: {Path(label.id).name} is not on the tile grid (EPSG:{grid.epsg}, "
                               f"{grid.height}×{grid.width})")
            raw = src.read(1)
        labels = EXPERT_DW[np.clip(raw, 0, 255).astype("uint8")][None]
        return Fetched(labels, {"dw_valid_t0": round(float((labels != NODATA).mean()), 4),
                                "dw_label_file": Path(label.id).name})
