"""noldo: build, download, verify and describe the NoLDO-S12 dataset as chunked Zarr v3 stores."""

from noldo._version import __version__
from noldo.errors import NoldoError
from noldo.grid import Grid, sample_grid, utm_epsg
from noldo.location import StoreLocation
from noldo.store import Layout, Split, SplitWriter, describe, list_splits
from noldo.store import open_dataset as open
from noldo.verify import verify

__all__ = [
    "Grid",
    "Layout",
    "NoldoError",
    "Split",
    "SplitWriter",
    "StoreLocation",
    "__version__",
    "describe",
    "list_splits",
    "open",
    "sample_grid",
    "utm_epsg",
    "verify",
]
