"""The single source of truth for NoLDO-S12: bands, legends and colours, seasons, splits, licences, citations."""

from __future__ import annotations

import re
from dataclasses import dataclass

from noldo.errors import NoldoError, choose

#: Version of the on-disk store schema written by this noldo (group attribute ``schema_version``): raised by a
#: changed layout, which an older noldo would misread (docs/architecture.md, "Store schema").
SCHEMA_VERSION = 1
#: Additions to that schema an older noldo ignores (group attribute ``schema_minor``, 0 when absent); CHANGELOG.md
#: lists them. 1: the GeoParquet index with footprints, CF attributes, the ``time`` array.
SCHEMA_MINOR = 1

#: Samples per shard: every array of a split is cut into shards of this many samples, written whole.
SHARD_SAMPLES = 64

#: Default tile size (pixels per side) of a sample grid, and its pixel size in metres.
TILE_SIZE = 264
PIXEL_SIZE = 10

#: Hugging Face dataset of the published NoLDO-S12 files, and the revision `noldo download` uses.
#: Sizes and sha256 always come from the hub for this revision. Pin a commit hash here once a release
#: has been checked (set it with --revision meanwhile).
HF_REPO = "vikki23/NoLDO-S12"
HF_REVISION = "main"

#: The published files of vikki23/NoLDO-S12, by `noldo download --what` value (docs/data.md, "Published files").
PUBLISHED_FILES: dict[str, tuple[str, ...]] = {
    "nol": ("ssl4eo_s12_nol.zip",),
    "dw": ("ssl4eo_s12_dw.zip",),
    "osm": ("ssl4eo_s12_osm.zip",),
    "weights": tuple(f"weights-cromss-{bands}-{fusion}-epoch=199.ckpt"
                     for bands in ("13B", "9B") for fusion in ("midFusion", "lateFusion")),
}


@dataclass(frozen=True)
class Band:
    """One spectral band or polarisation channel."""

    name: str
    index: int
    description: str
    wavelength_nm: float | None  # central wavelength (Sentinel-2A); None for radar
    resolution_m: int  # native ground sampling distance
    mean: float  # normalisation statistics of the original pipeline (docs/method.md)
    std: float


S2_BANDS: tuple[Band, ...] = (
    Band("B1", 0, "coastal aerosol", 442.7, 60, 1605.58, 786.79),
    Band("B2", 1, "blue", 492.4, 10, 1390.78, 850.35),
    Band("B3", 2, "green", 559.8, 10, 1314.87, 875.06),
    Band("B4", 3, "red", 664.6, 10, 1363.52, 1138.85),
    Band("B5", 4, "red edge 1", 704.1, 20, 1549.44, 1122.18),
    Band("B6", 5, "red edge 2", 740.5, 20, 2091.75, 1161.59),
    Band("B7", 6, "red edge 3", 782.8, 20, 2371.72, 1274.39),
    Band("B8", 7, "near infrared", 832.8, 10, 2299.90, 1248.43),
    Band("B8A", 8, "narrow near infrared", 864.7, 20, 2560.30, 1345.53),
    Band("B9", 9, "water vapour", 945.1, 60, 830.07, 577.32),
    Band("B10", 10, "cirrus (SWIR)", 1373.5, 60, 22.10, 51.15),
    Band("B11", 11, "short-wave infrared 1", 1613.7, 20, 2177.07, 1336.10),
    Band("B12", 12, "short-wave infrared 2", 2202.4, 20, 1524.07, 1136.54),
)

S1_BANDS: tuple[Band, ...] = (
    Band("VV", 0, "vertical transmit, vertical receive (σ⁰, dB)", None, 10, -12.548, 5.257),
    Band("VH", 1, "vertical transmit, horizontal receive (σ⁰, dB)", None, 10, -20.192, 5.912),
)

#: ``noldo stats`` histograms S1 dB in bins of this width over this range; values outside count in the edge bins.
S1_STATS_BIN_WIDTH = 0.01
S1_STATS_RANGE = (-80.0, 40.0)

#: S2 band subsets by name → band indices (CATALOG.md, "Band subsets and normalisation").
BAND_SUBSETS: dict[str, tuple[int, ...]] = {
    "13B": tuple(range(13)),
    "9B": (1, 2, 3, 4, 5, 6, 7, 11, 12),
}


def band_subset(name: str) -> tuple[int, ...]:
    """Indices of the S2 bands of a named subset, e.g. ``band_subset("9B")``."""
    return choose(BAND_SUBSETS, name, "band subset")


_ZERO_PADDED = re.compile(r"^B0(\d)$")


def band_name(name: str) -> str:
    """The catalogue's name of a band, from it or an alias: any case, and the zero-padded S2 names used by
    ESA's products and TorchGeo (``B01`` … ``B09`` for ``B1`` … ``B9``).

    Example:
        >>> band_name("B01"), band_name("b8a"), band_name("vh")
        ('B1', 'B8A', 'VH')
    """
    canonical = _ZERO_PADDED.sub(r"B\1", str(name).strip().upper())
    if canonical not in {b.name for b in (*S2_BANDS, *S1_BANDS)}:
        raise NoldoError(f"unknown band {name!r}; choose from {', '.join(b.name for b in (*S2_BANDS, *S1_BANDS))} "
                         "(B01…B09 are accepted for B1…B9)")
    return canonical


def band_index(name: str) -> int:
    """The index of a band in its modality's band axis (S2 ``band``, S1 ``polarization``), by any name
    :func:`band_name` accepts: ``band_index("B01") == band_index("B1") == 0``."""
    canonical = band_name(name)
    return next(b.index for b in (*S2_BANDS, *S1_BANDS) if b.name == canonical)


@dataclass(frozen=True)
class LandCoverClass:
    """One class of a legend."""

    value: int
    name: str
    colour: str  # hex, '#RRGGBB'
    dw_value: int | None = None  # the Dynamic World class it maps to (OSM and DFC2020 legends)


#: Colour of pixels outside a legend (nodata, no label) wherever labels are drawn.
NODATA_COLOUR = "#D9D9D9"


#: Dynamic World V1 ``label`` band (CATALOG.md, "Legends"). Nodata is 255.
DW_CLASSES: tuple[LandCoverClass, ...] = (
    LandCoverClass(0, "water", "#419BDF"),
    LandCoverClass(1, "trees", "#397D49"),
    LandCoverClass(2, "grass", "#88B053"),
    LandCoverClass(3, "flooded_vegetation", "#7A87C6"),
    LandCoverClass(4, "crops", "#E49635"),
    LandCoverClass(5, "shrub_and_scrub", "#DFC35A"),
    LandCoverClass(6, "built", "#C4281B"),
    LandCoverClass(7, "bare", "#A59B8F"),
    LandCoverClass(8, "snow_and_ice", "#B39FE1"),
)

#: The 13 osmlanduse classes (CORINE level 2), values 1–13; 0 = no OSM land use (CATALOG.md, "Legends").
OSM_CLASSES: tuple[LandCoverClass, ...] = (
    LandCoverClass(1, "Urban fabric", "#E6004D", 6),
    LandCoverClass(2, "Arable land", "#FFFFA8", 4),
    LandCoverClass(3, "Forests", "#4DFF00", 1),
    LandCoverClass(4, "Industrial, commercial and transport units", "#CC4DF2", 6),
    LandCoverClass(5, "Artificial, non-agricultural vegetated areas", "#FFA6FF", 2),
    LandCoverClass(6, "Mine, dump and construction sites", "#A600CC", 7),
    LandCoverClass(7, "Pastures", "#E6E64D", 2),
    LandCoverClass(8, "Permanent crops", "#E68000", 4),
    LandCoverClass(9, "Water bodies", "#00CCF2", 0),
    LandCoverClass(10, "Open spaces with little or no vegetation", "#E6E6E6", 7),
    LandCoverClass(11, "Shrub and/or herbaceous vegetation associations", "#CCF24D", 5),
    LandCoverClass(12, "Wetlands", "#A6A6FF", 3),
    LandCoverClass(13, "Coastal wetlands", "#E6E6FF", 0),
)

#: OSM class priority, highest first: water and wetlands over mines and industry, over urban, over
#: vegetation (CATALOG.md, "From OSM tags to classes"). Rules are tried in this order; it also breaks ties of
#: equal area.
OSM_PRIORITY: tuple[int, ...] = (9, 13, 12, 6, 4, 1, 5, 8, 2, 7, 3, 11, 10)

#: OSM tag → class rules (key, value, class), from the osmlanduse legend as CromSS used it; a polygon
#: takes the class of the first rule it matches in :data:`OSM_PRIORITY` order.
OSM_TAG_RULES: tuple[tuple[str, str, int], ...] = (
    ("natural", "water", 9), ("waterway", "riverbank", 9), ("landuse", "reservoir", 9), ("landuse", "basin", 9),
    ("waterway", "dock", 9), ("waterway", "canal", 9), ("water", "canal", 9), ("water", "pond", 9),
    ("landuse", "pond", 9),
    ("landuse", "salt_pond", 13), ("wetland", "tidalflat", 13), ("tidal", "yes", 13),
    ("natural", "wetland", 12), ("natural", "marsh", 12), ("wetland", "marsh", 12),
    ("landuse", "quarry", 6), ("landuse", "construction", 6), ("landuse", "landfill", 6),
    ("landuse", "brownfield", 6),
    ("landuse", "railway", 4), ("landuse", "industrial", 4), ("landuse", "commercial", 4), ("landuse", "retail", 4),
    ("landuse", "harbour", 4), ("landuse", "port", 4), ("landuse", "lock", 4), ("lock", "yes", 4),
    ("leisure", "marina", 4),
    ("landuse", "residential", 1), ("landuse", "garages", 1),
    ("leisure", "stadium", 5), ("landuse", "recreation_ground", 5), ("leisure", "golf_course", 5),
    ("leisure", "sports_centre", 5), ("leisure", "playground", 5), ("leisure", "pitch", 5),
    ("landuse", "village_green", 5), ("landuse", "allotments", 5), ("landuse", "cemetery", 5),
    ("leisure", "park", 5), ("tourism", "zoo", 5), ("leisure", "track", 5), ("leisure", "garden", 5),
    ("highway", "raceway", 5),
    ("landuse", "vineyard", 8), ("landuse", "orchard", 8),
    ("landuse", "farmland", 2), ("landuse", "farm", 2), ("landuse", "farmyard", 2),
    ("landuse", "greenhouse_horticulture", 2), ("landuse", "greenhouse", 2), ("building", "greenhouse", 2),
    ("landuse", "meadow", 7),
    ("landuse", "forest", 3), ("natural", "wood", 3),
    ("landuse", "grass", 11), ("landuse", "greenfield", 11), ("natural", "scrub", 11), ("natural", "heath", 11),
    ("natural", "grassland", 11),
    ("natural", "cliff", 10), ("natural", "fell", 10), ("natural", "sand", 10), ("natural", "scree", 10),
    ("natural", "beach", 10), ("natural", "mud", 10), ("natural", "glacier", 10), ("natural", "bare_rock", 10),
    ("natural", "rock", 10),
)


def osm_tags() -> dict[str, list[str]]:
    """The tag query for osmnx/Overpass: every key with the values the rules use."""
    tags: dict[str, list[str]] = {}
    for key, value, _ in OSM_TAG_RULES:
        tags.setdefault(key, []).append(value)
    return tags


#: The alternative OSM raster order read from the CromSS README figure (docs/data.md, "Label encodings"), as our
#: value for each of its values 1–13; `noldo convert --osm-order readme` applies it.
OSM_README_ORDER: tuple[int, ...] = (1, 4, 2, 5, 3, 6, 9, 10, 7, 11, 8, 12, 13)

#: DFC2020 simplified IGBP legend and its mapping onto the 8 trainable Dynamic World classes
#: (CATALOG.md, "DFC2020"); ``dw_value`` None = ignored (255): savanna and snow/ice are absent in val/test.
DFC2020_CLASSES: tuple[LandCoverClass, ...] = (
    LandCoverClass(1, "Forest", "#009900", 1),
    LandCoverClass(2, "Shrubland", "#C6B044", 5),
    LandCoverClass(3, "Savanna", "#FBFF13", None),
    LandCoverClass(4, "Grassland", "#B6FF05", 2),
    LandCoverClass(5, "Wetlands", "#27FF87", 3),
    LandCoverClass(6, "Croplands", "#C24F44", 4),
    LandCoverClass(7, "Urban/Built-up", "#A5A5A5", 6),
    LandCoverClass(8, "Snow/Ice", "#69FFF8", None),
    LandCoverClass(9, "Barren", "#F9FFA4", 7),
    LandCoverClass(10, "Water", "#1C0DFF", 0),
)

LEGENDS: dict[str, tuple[LandCoverClass, ...]] = {
    "dw": DW_CLASSES,
    "osm": OSM_CLASSES,
    "dfc2020": DFC2020_CLASSES,
}

#: The legend of each label array.
ARRAY_LEGENDS: dict[str, tuple[LandCoverClass, ...]] = {"dw": DW_CLASSES, "truth": DW_CLASSES, "osm": OSM_CLASSES}


@dataclass(frozen=True)
class Season:
    """One of the four SSL4EO-S12 acquisition seasons."""

    index: int
    name: str
    reference_date: str  # ISO date; each location subtracts its own day offset from all four dates


#: Seasons in chronological order (CATALOG.md, "Seasons"). A location draws one offset d ∈ [0, 365) days;
#: season t is searched in [reference − d − 15 days, reference − d + 15 days).
SEASONS: tuple[Season, ...] = (
    Season(0, "t0", "2020-12-21"),
    Season(1, "t1", "2021-03-20"),
    Season(2, "t2", "2021-06-21"),
    Season(3, "t3", "2021-09-22"),
)
SEASON_HALF_WINDOW_DAYS = 15
SEASON_MAX_OFFSET_DAYS = 365


#: Encoding of the ``time`` array (CF): whole seconds since the epoch, int64, this value for "no scene" (NaT).
TIME_UNITS = "seconds since 1970-01-01 00:00:00"
NAT = -(2**63)


@dataclass(frozen=True)
class ArrayKind:
    """An array every split may hold: its dimensions, dtype, nodata and licence."""

    name: str
    dims: tuple[str, ...]
    dtype: str
    nodata: int | float | None  # None: no nodata value (georeference arrays)
    description: str  # also the CF ``long_name``
    licence: str
    units: str | None = None  # CF units (UDUNITS); None for class labels, which carry flag_values instead
    standard_name: str | None = None  # CF standard name, where one exists


#: Every array of the store schema (CATALOG.md, "Store layout"). ``band`` is the S2 band axis; S1 has its own
#: ``polarization`` axis because xarray needs one size per dimension name.
ARRAYS: dict[str, ArrayKind] = {
    a.name: a
    for a in (
        ArrayKind("s2", ("sample", "season", "band", "y", "x"), "uint16", 0,
                  "Sentinel-2 L1C top-of-atmosphere digital numbers (reflectance × 10000)", "copernicus", "1"),
        ArrayKind("s1", ("sample", "season", "polarization", "y", "x"), "float32", float("nan"),
                  "Sentinel-1 GRD backscatter σ⁰ in dB (VV, VH)", "copernicus", "dB"),
        ArrayKind("dw", ("sample", "season", "y", "x"), "uint8", 255,
                  "Dynamic World class 0–8 (noisy labels for nol, expert labels downstream)", "cc-by-4.0"),
        ArrayKind("osm", ("sample", "y", "x"), "uint8", 0,
                  "OpenStreetMap land use, 13 classes 1–13, 0 = no OSM land use", "odbl-1.0"),
        ArrayKind("truth", ("sample", "y", "x"), "uint8", 255,
                  "known land-cover truth, Dynamic World classes 0–8 (synthetic source only)", "cc0-1.0"),
        ArrayKind("s2_cloud", ("sample", "season", "y", "x"), "uint8", 255,
                  "Cloud Score+ cs_cdf × 100 of the S2 scene: 0 = cloud or shadow … 100 = clear", "cloud-score-plus",
                  "percent"),
        ArrayKind("dw_trust", ("sample", "season", "y", "x"), "uint8", 255,
                  "cross-modal trust in each Dynamic World label, 0 … 254 (benchmark.audit); 255 = no label",
                  "cc-by-4.0", "1"),
        ArrayKind("crs_epsg", ("sample",), "int32", None, "EPSG code of the sample's UTM grid", "cc0-1.0"),
        ArrayKind("center_lon", ("sample",), "float64", None, "longitude of the sample centre", "cc0-1.0",
                  "degrees_east", "longitude"),
        ArrayKind("center_lat", ("sample",), "float64", None, "latitude of the sample centre", "cc0-1.0",
                  "degrees_north", "latitude"),
        ArrayKind("transform", ("sample", "affine"), "float64", None,
                  "affine transform of the grid, rasterio order a, b, c, d, e, f", "cc0-1.0", "m"),
        ArrayKind("time", ("sample", "season"), "int64", NAT,
                  "acquisition time of the Sentinel-2 scene (UTC)", "cc0-1.0", TIME_UNITS, "time"),
    )
}

#: Arrays that hold one value per pixel (the rest are per-sample georeference arrays).
IMAGE_ARRAYS = ("s2", "s1", "dw", "osm", "truth", "s2_cloud", "dw_trust")

#: ``s2_cloud`` at or above this is clear sky (Google's Cloud Score+ example keeps cs_cdf ≥ 0.60; 0.50–0.65
#: work well); the index's ``s2_clear_tN`` is the share of such pixels.
CLEAR_THRESHOLD = 60
GEOREF_ARRAYS = ("crs_epsg", "center_lon", "center_lat", "transform")
#: Arrays derived from the sample index when a split is finalised (schema 1.1 on): acquisition times.
DERIVED_ARRAYS = ("time",)


def array_kind(name: str) -> ArrayKind:
    """The schema entry of an array name, or a clear error."""
    return choose(ARRAYS, name, "array")


@dataclass(frozen=True)
class SplitInfo:
    """A standard split of NoLDO-S12."""

    name: str
    samples: int  # published sample count
    seasons: int
    tile_size: int
    arrays: tuple[str, ...]
    description: str


SPLITS: dict[str, SplitInfo] = {
    s.name: s
    for s in (
        SplitInfo("nol", 103_793, 4, 264, ("s2", "s1", "dw"),
                  "SSL4EO-S12@NoL pretraining: 4 seasons, Dynamic World noisy labels"),
        SplitInfo("dw_train", 3_574, 1, 510, ("s2", "s1", "dw"), "SSL4EO-S12@DW train: expert DW tiles"),
        SplitInfo("dw_test", 340, 1, 512, ("s2", "s1", "dw"), "SSL4EO-S12@DW test: expert DW tiles"),
        SplitInfo("osm_train", 1_375, 1, 510, ("s2", "s1", "dw", "osm"), "SSL4EO-S12@OSM train"),
        SplitInfo("osm_test", 400, 1, 512, ("s2", "s1", "dw", "osm"), "SSL4EO-S12@OSM test"),
        SplitInfo("dfc2020_val", 986, 1, 256, ("s2", "s1", "dw"), "DFC2020 validation, mapped to 8 DW classes"),
        SplitInfo("dfc2020_test", 5_128, 1, 256, ("s2", "s1", "dw"), "DFC2020 test, mapped to 8 DW classes"),
    )
}


@dataclass(frozen=True)
class Licence:
    """A licence under which (part of) a store is distributed."""

    key: str
    name: str
    url: str
    attribution: str


LICENCES: dict[str, Licence] = {
    lic.key: lic
    for lic in (
        Licence("copernicus", "Copernicus Sentinel data terms (free, full and open)",
                "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice",
                "Contains modified Copernicus Sentinel data, processed by Google Earth Engine."),
        Licence("cc-by-4.0", "Creative Commons Attribution 4.0 (Dynamic World)",
                "https://creativecommons.org/licenses/by/4.0/",
                "This dataset is produced for the Dynamic World Project by Google in partnership with "
                "National Geographic Society and the World Resources Institute."),
        Licence("cloud-score-plus", "Creative Commons Attribution 4.0 (Cloud Score+)",
                "https://creativecommons.org/licenses/by/4.0/",
                "Cloud Score+ S2_HARMONIZED V1 by Google (Pasquarella et al., CVPR 2023)."),
        Licence("odbl-1.0", "Open Database License 1.0 (OpenStreetMap)",
                "https://opendatacommons.org/licenses/odbl/1-0/",
                "© OpenStreetMap contributors. Derived databases must be shared under the ODbL."),
        Licence("cc0-1.0", "CC0 1.0 (georeference and simulated data made by noldo)",
                "https://creativecommons.org/publicdomain/zero/1.0/", "No attribution required."),
    )
}


@dataclass(frozen=True)
class Reference:
    """A publication to cite, and when."""

    key: str  # BibTeX key
    authors: tuple[str, ...]  # "C. M. Albrecht"; the last word is the surname
    title: str
    journal: str
    year: int
    cite_for: str
    et_al: bool = False  # more authors than listed
    volume: str | None = None
    pages: str | None = None  # pages or article number
    doi: str | None = None
    arxiv: str | None = None


#: What to cite: CromSS for NoLDO-S12 itself, then the sources of its parts.
REFERENCES: tuple[Reference, ...] = (
    Reference("liu2025cromss", ("C. Liu", "C. M. Albrecht", "Y. Wang", "X. X. Zhu"),
              "CromSS: Cross-modal pretraining with noisy labels for remote sensing image segmentation",
              "IEEE Transactions on Geoscience and Remote Sensing", 2025,
              "NoLDO-S12, its splits and the CromSS weights", arxiv="2405.01217"),
    Reference("wang2023ssl4eo", ("Y. Wang", "N. A. A. Braham", "Z. Xiong", "C. Liu", "C. M. Albrecht", "X. X. Zhu"),
              "SSL4EO-S12: A large-scale multimodal, multitemporal dataset for self-supervised learning in "
              "Earth observation", "IEEE Geoscience and Remote Sensing Magazine", 2023,
              "the SSL4EO-S12 locations, seasons and Sentinel-1/2 patches", doi="10.1109/MGRS.2023.3281651",
              arxiv="2211.07044"),
    Reference("brown2022dynamic", ("C. F. Brown",), "Dynamic World, Near real-time global 10 m land use land cover "
              "mapping", "Scientific Data", 2022, "the Dynamic World labels (`dw`)", et_al=True, volume="9",
              pages="251", doi="10.1038/s41597-022-01307-4"),
)


def split_info(name: str) -> SplitInfo | None:
    """The standard split of that name, or None for a custom split."""
    return SPLITS.get(name)
