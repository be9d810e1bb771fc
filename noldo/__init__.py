"""noldo: build, download, verify and describe the NoLDO-S12 dataset as chunked Zarr v3 stores."""

__version__ = "0.1.0"

from noldo.errors import NoldoError
from noldo.grid import Grid, sample_grid, utm_epsg
from noldo.store import Layout, SplitWriter, describe, list_splits
from noldo.store import open_split as open
from noldo.verify import verify

__all__ = [
    "Grid",
    "Layout",
    "NoldoError",
    "SplitWriter",
    "__version__",
    "describe",
    "list_splits",
    "open",
    "sample_grid",
    "utm_epsg",
    "verify",
]
