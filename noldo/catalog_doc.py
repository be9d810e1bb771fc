"""Render the catalogue (``noldo catalog`` and the committed CATALOG.md) from :mod:`noldo.catalog`."""

from __future__ import annotations

from noldo import catalog as c
from noldo.markdown import table
from noldo.store import Layout


def _swatch(hex_colour: str) -> str:
    return f"`{hex_colour}`"


def _nodata(value: object) -> str:
    return "—" if value is None else ("NaN" if value != value else str(value))


def split_raw_bytes(split: c.SplitInfo) -> dict[str, int]:
    """Uncompressed bytes of each image array of a published split, from its layout and the array dtypes."""
    layout = Layout(split.samples, split.seasons, split.tile_size, split.tile_size, split.arrays)
    return {a: layout.nbytes(a) for a in split.arrays}


def _gb(n: int) -> str:
    gb = n / 1e9
    return f"{gb:,.0f}" if gb >= 100 else f"{gb:.3g}"


def _raw_size(split: c.SplitInfo) -> str:
    sizes = split_raw_bytes(split)
    return f"{_gb(sum(sizes.values()))} GB ({', '.join(f'{a} {_gb(n)}' for a, n in sizes.items())})"


def _sections() -> list[str]:
    dw_names = {cls.value: cls.name for cls in c.DW_CLASSES}
    return [
        "# NoLDO-S12 catalogue\n\n"
        "Generated from `noldo/catalog.py` by `noldo catalog`; do not edit by hand (a test checks it).\n\n"
        "NoLDO-S12 pairs Sentinel-1 and Sentinel-2 patches with noisy Dynamic World labels (the `nol` "
        "pretraining split) and with expert Dynamic World and OpenStreetMap labels (the downstream splits). "
        "`noldo` stores every split with one schema, described below.",

        "## Splits\n\n" + table(
            ("split", "samples", "seasons", "tile (px)", "arrays", "raw size", "description"),
            ((s.name, f"{s.samples:,}", s.seasons, f"{s.tile_size}×{s.tile_size}", ", ".join(s.arrays),
              _raw_size(s), s.description) for s in c.SPLITS.values())) +
        "\n\n`samples` is the published sample count. The raw size is the uncompressed size of the image arrays, "
        "computed from the layout: samples × seasons × bands × height × width × bytes per value of each array "
        "(dimensions and dtypes in the table under *Store layout*), in GB (10⁹ bytes), with the per-array "
        "breakdown in brackets; the georeference arrays add "
        f"{sum(Layout(1, 1, 1, 1, ()).nbytes(a) for a in c.GEOREF_ARRAYS)} bytes per sample. The stored files are "
        "smaller (compressed); `noldo info ROOT` reports the decoded `bytes` and the `stored_bytes` of every "
        "array of a real store.\n\n"
        "Other split names (lower-case letters, digits, `_`) are allowed for custom builds.",

        "## Store layout\n\n"
        "```\nROOT/\n  manifest.json          size and sha256 of every file below\n"
        "  <split>.zarr/          Zarr v3 group, one per split\n"
        "    zarr.json            group attributes (see below) and consolidated metadata\n"
        "    <array>/zarr.json    array metadata: shape, dtype, dimension_names, codecs\n"
        "    <array>/c/<k>/0/...  shard k: samples 64·k … 64·k + 63\n"
        "  <split>.parquet        sample index (GeoParquet 1.1): row i describes sample i\n"
        "  README.md              Hugging Face dataset card (noldo card; docs/card.md)\n"
        "  croissant.json         Croissant 1.0 description (noldo card)\n"
        "  stac/                  STAC 1.1 catalogue and stac-geoparquet items (noldo stac; docs/stac.md)\n"
        "  .noldo/<split>/        build state (commit markers); not published\n```\n\n"
        f"Every array shares the leading `sample` axis. Image arrays are stored as shards of "
        f"{c.SHARD_SAMPLES} samples, each written whole and atomically (temporary name, then rename), so a "
        "reader never sees a half-written shard. Inside a shard the chunk is one sample × one season × all "
        "bands × the full tile, so reading one season of one sample decodes only that. Codec: "
        "Blosc-zstd level 5 with bit shuffle. Seasons are in chronological order; downstream splits have a "
        "season axis of length 1. There are no x/y coordinate arrays: `transform` is the georeference "
        "(pixel (col, row) has its upper-left corner at `transform · (col, row)`).\n\n" + table(
            ("array", "dims", "dtype", "nodata", "licence", "content"),
            ((f"`{a.name}`", ", ".join(a.dims), a.dtype, _nodata(a.nodata), a.licence, a.description)
             for a in c.ARRAYS.values())) +
        "\n\nDimension sizes: `season` 4 (`nol`) or 1, `band` 13 (S2 order below), `polarization` 2 "
        "(VV, VH), `y`/`x` the tile size, `affine` 6. S1 has its own `polarization` dimension because "
        "xarray needs one size per dimension name.\n\n"
        "`xarray.open_zarr(\"ROOT/nol.zarr\")` opens a split with named dimensions, nodata masked as NaN and "
        "the coordinates `time` (sample, season), `center_lon` and `center_lat`; `noldo.open(ROOT, \"nol\")` "
        "also attaches `band`, `polarization`, `season` and `sample` coordinates.",

        "### CF attributes and time\n\n"
        "Every array carries CF attributes (schema 1.1 on), so xarray and other CF readers interpret it without "
        "noldo: `_FillValue` (the nodata above: S2 0, S1 NaN, labels 255, OSM 0 — xarray then shows them as "
        "NaN, promoting integers to floats), `long_name`, `units` (S2 `1`: digital numbers, reflectance × "
        "10000; S1 `dB`; `s2_cloud` `percent`), `standard_name` where CF has one (`longitude`, `latitude`, "
        "`time`), `flag_values`/`flag_meanings` for the label arrays, and `coordinates` naming `time`, "
        "`center_lon` and `center_lat`. `xarray.open_zarr(..., mask_and_scale=False)` or "
        "`noldo.open(ROOT, mask=False)` give the stored integers; `benchmark` reads them with zarr "
        "directly and never promotes them.\n\n"
        f"`time` (sample, season) is the acquisition time of each season's Sentinel-2 scene: int64 "
        f"`{c.TIME_UNITS}`, proleptic Gregorian, {c.NAT} (NaT) where a season has no scene, so xarray "
        "decodes it to `datetime64` and `ds.groupby(\"time.season\")` works. It is written when a split is "
        "finalised, from the index's `s2_time_tN` (the scene time Earth Engine reports), else the sensing "
        "start in the scene id `s2_id_tN` (converted stores), else, for sources that record only a day "
        "(`date_tN`), noon UTC of that day.",

        "### Group attributes\n\n" + table(("attribute", "content"), (
            ("`schema_version`", f"store schema, currently {c.SCHEMA_VERSION}: raised by a changed layout; readers "
                                 "refuse newer ones"),
            ("`schema_minor`", f"additions to it an older noldo ignores, currently {c.SCHEMA_MINOR} (absent: 0)"),
            ("`title`, `description`, `split`", "what the split is"),
            ("`layout`", "samples, seasons, height, width and image arrays"),
            ("`shard_samples`", "samples per shard"),
            ("`bands`", "per S2 and S1 band: name, index, description, wavelength, resolution, mean, std"),
            ("`s2_scale_factor`, `s1_units`", "reflectance = DN × 1e-4; S1 in dB"),
            ("`legends`", "per label array: value, name, hex colour"),
            ("`nodata`", "per image array (`\"NaN\"` for float NaN)"),
            ("`seasons`, `season_rule`", "season names, reference dates and the window rule"),
            ("`grid_rule`", "how sample grids are made"),
            ("`provenance`", "`noldo_version`, `created` (UTC), `source`, `command` and source details"),
            ("`licences`, `array_licences`", "licence texts and the licence of each array"),
            ("`statistics`", "written by `noldo stats`: per band count, mean, std, min, max, percentiles; class "
                             "frequencies (see *Store statistics*)"),
        )) + "\n\nEach array also carries `description`, `licence` and `nodata` attributes.",

        "### Sample index\n\n"
        "`ROOT/<split>.parquet` has one row per sample in array order, with at least `sample` (the "
        "sample id, e.g. `nol-0000173`), `shard` and `row_in_shard`. Sources add provenance columns: "
        "scene ids and acquisition times per season, cloud %, valid fractions, original ids, QC values "
        "and rejection reasons.\n\n"
        "It is GeoParquet 1.1 (schema 1.1 on): `geometry` holds each sample's footprint, the outline of its "
        "grid projected to lon/lat (EPSG:4326, WKB; a grid crossing the antimeridian is split into a "
        "MultiPolygon of one polygon on each side), `bbox` is the GeoParquet covering column (`xmin`, "
        "`ymin`, `xmax`, `ymax`), and the `geo` metadata names the CRS. `geopandas.read_parquet` reads it "
        "as a GeoDataFrame; `noldo.Split.index()` returns the other columns as a DataFrame and "
        "`Split.geo_index()` the GeoDataFrame.\n\n"
        "Stores written before schema 1.1 still open, verify and train; `noldo upgrade ROOT` brings them "
        "up to date in place (footprints, CF attributes, `time`, manifest; shards are not rewritten). "
        "CHANGELOG.md lists what each schema version changed.",

        "### Manifest\n\n"
        "`ROOT/manifest.json`: `schema_version`, `dataset`, `created_utc`, `noldo_version`, `total_bytes`, "
        "`splits` (samples, seasons, height, width, arrays, source) and `files`, one entry per file with "
        "`path`, `bytes`, `sha256`, `split`, `group`, `array` (`meta` for metadata, `index` for the "
        "Parquet index) and for shards `shard_index`, `sample_start`, `sample_stop` (half-open) and "
        "`n_samples`. `noldo verify ROOT` checks schema, completeness and every sha256.",

        "## Sentinel-2 L1C bands\n\n"
        "Collection `COPERNICUS/S2_HARMONIZED` (top-of-atmosphere reflectance × 10000, uint16, 0 = "
        "nodata), all bands on the 10 m grid (20 m and 60 m bands resampled bilinearly).\n\n" + table(
            ("index", "band", "description", "wavelength (nm)", "native res. (m)", "mean", "std"),
            ((b.index, b.name, b.description, b.wavelength_nm, b.resolution_m, b.mean, b.std)
             for b in c.S2_BANDS)),

        "## Sentinel-1 GRD bands\n\n"
        "Collection `COPERNICUS/S1_GRD`, interferometric wide swath, σ⁰ in dB (float32, NaN = nodata).\n\n"
        + table(("index", "band", "description", "res. (m)", "mean", "std"),
                 ((b.index, b.name, b.description, b.resolution_m, b.mean, b.std) for b in c.S1_BANDS)),

        "## Band subsets and normalisation\n\n" + table(
            ("subset", "S2 bands"),
            ((name, " ".join(c.S2_BANDS[i].name for i in idx)) for name, idx in c.BAND_SUBSETS.items())) +
        "\n\nThe original CromSS pipeline encodes every band as x = clip((v − (μ − 2σ)) / (4σ), 0, 1), "
        "quantised to 1/255 by truncation, with the per-band mean μ and standard deviation σ above "
        "(computed by SSL4EO-S12 on 50k samples).",

        "## Store statistics\n\n"
        "`noldo stats ROOT --split nol` computes, over the valid pixels of a split (S2 ≠ 0, S1 not NaN, labels ≠ "
        "their nodata: 255, OSM 0), per band `count`, `mean`, `std`, `min`, `max` and the percentiles `p1`, `p2`, "
        "`p98`, `p99`, and per label array the pixel count and share of each class. Each dask task reads one shard of"
        " one array (a few samples at a time) into a histogram and the histograms are summed in a tree, so memory "
        "does not grow with the store (README, Performance). S2 digital numbers and labels are histogrammed with one "
        "bin per value, so their statistics are exact (mean and std from exact integer sums); S1 dB "
        f"goes into {c.S1_STATS_BIN_WIDTH} dB bins over [{c.S1_STATS_RANGE[0]:g}, {c.S1_STATS_RANGE[1]:g}) dB: its "
        "count, mean, std, min and max are exact sums, its percentiles (the bin centre) within one bin. A percentile "
        "is the smallest value with at least p % of the pixels at or below it (numpy's `inverted_cdf`). The result is"
        " kept in the split's group attribute `statistics` (the command holds the split's write lock and rewrites the"
        " manifest); `python -m benchmark.cromss --stats store` and `python -m benchmark.finetune --stats store` then"
        " encode with the store's own mean and std instead of the table above (`--stats ssl4eo`, the default, as in "
        "the paper): pretraining with its split's, transfer with its training split's for every split (`--stats "
        "store:SPLIT` names another).\n\n"
        "**Which published table matches `COPERNICUS/S2_HARMONIZED`.** The table above is SSL4EO-S12 v1's "
        "(B2 mean 1390.8 DN); SSL4EO-S12 v1.1 publishes L1C means about 1000 DN higher (B2 2393, B1 2607 "
        "against 1606, B10 1021.8 against 22.1). The difference is ESA's radiometric offset: from processing "
        "baseline 04.00 (products from 25 January 2022 on, and every product of ESA's later reprocessing of "
        "the archive into Collection-1) L1C digital numbers carry +1000 (`RADIO_ADD_OFFSET` = −1000), so "
        "that negative reflectances over dark surfaces survive quantisation. Earth Engine's "
        "`S2_HARMONIZED` shifts the products with the offset back into the old range, so its DN are "
        "reflectance × 10000 with no offset, for 2019–2021 scenes as for new ones, and match the v1 "
        "table: NoLDO-S12 stores built by noldo are in that range. v1.1's statistics are of imagery that "
        "keeps the offset; B10 shows it plainly, since cirrus-band reflectance is near zero almost everywhere "
        "(a mean of 22 DN cannot become 1022 by a change of season or place, only by an added constant). "
        "Mixing v1.1 pixels or statistics with a noldo store needs the 1000 DN subtracted first. The index "
        "records each scene's baseline (`s2_baseline_tN`), and `noldo stats` on a real build shows which "
        "range a store is in.",

        "## Seasons\n\n"
        f"Four acquisitions per `nol` location, in chronological order. Each location draws one day offset "
        f"d ∈ [0, {c.SEASON_MAX_OFFSET_DAYS}) and searches season t in [reference − d − "
        f"{c.SEASON_HALF_WINDOW_DAYS} d, reference − d + {c.SEASON_HALF_WINDOW_DAYS} d) "
        "(the SSL4EO-S12 recipe), so the seasons stay about three months apart.\n\n" + table(
            ("index", "name", "reference date"), ((s.index, s.name, s.reference_date) for s in c.SEASONS)),

        "## Cloud scores (`s2_cloud`)\n\n"
        "Google's Cloud Score+ for Sentinel-2 (`GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED`, band `cs_cdf`: 0 = "
        "certainly cloud or shadow, 1 = clear) of the S2 scene of each season, stored as round(100 × cs_cdf) "
        f"in uint8, 255 where there is no score. Pixels at or above {c.CLEAR_THRESHOLD} count as clear sky "
        "(Google's example keeps cs_cdf ≥ 0.60; 0.50–0.65 work well): the index's `s2_clear_tN` is their "
        "share. `benchmark` can ignore labels under a threshold (`--min-clear`, off by default). Stores "
        "built before the array existed have none; every reader works without it.",

        "## Legends\n\n### Dynamic World (`dw`, `truth`)\n\n"
        "Values 0–8 as the Dynamic World `label` band; 255 = nodata (cloud-masked, unlabelled).\n\n" + table(
            ("value", "class", "colour"), ((k.value, k.name, _swatch(k.colour)) for k in c.DW_CLASSES)) +
        "\n\n### OpenStreetMap land use (`osm`)\n\n"
        "13 osmlanduse classes (CORINE level 2); 0 = no OSM land use. OSM-derived arrays are under the "
        "ODbL.\n\n" + table(
            ("value", "class", "colour", "→ Dynamic World"),
            ((k.value, k.name, _swatch(k.colour), dw_names[k.dw_value]) for k in c.OSM_CLASSES)) +
        "\n\n" + _osm_rules() +
        "\n\n### DFC2020\n\n"
        "Simplified IGBP classes mapped onto the 8 trainable Dynamic World classes (255 = ignored).\n\n"
        + table(("DFC value", "class", "colour", "→ Dynamic World"),
                 ((k.value, k.name, _swatch(k.colour), "ignored (255)" if k.dw_value is None
                   else f"{k.dw_value} {dw_names[k.dw_value]}") for k in c.DFC2020_CLASSES)),

        _synthetic_section(),

        "## Sample grid\n\n"
        f"Every modality of a sample is fetched or rasterised onto one grid: the UTM zone of the sample "
        f"centre (EPSG 326zz north, 327zz south, with the south-west Norway zone 32 and the Svalbard zones "
        f"31/33/35/37), {c.PIXEL_SIZE} m pixels, {c.TILE_SIZE}×{c.TILE_SIZE} pixels by default, upper-left "
        f"corner = centre − size/2 pixels, rounded to the nearest multiple of {c.PIXEL_SIZE} m. Latitudes "
        "beyond ±84° are refused. Labels are never interpolated.",

        "## Licences\n\n" + table(
            ("key", "licence", "attribution"),
            ((k.key, f"[{k.name}]({k.url})", k.attribution) for k in c.LICENCES.values())) +
        "\n\nThe published NoLDO-S12 files are distributed under the terms of the "
        f"[{c.HF_REPO}](https://huggingface.co/datasets/{c.HF_REPO}) dataset card.",

        citation_section(),
    ]


def _citation(ref: c.Reference) -> str:
    links = ([f"[doi:{ref.doi}](https://doi.org/{ref.doi})"] if ref.doi else []) + (
        [f"[arXiv:{ref.arxiv}](https://arxiv.org/abs/{ref.arxiv})"] if ref.arxiv else [])
    journal = f"*{ref.journal}*" + (f" {ref.volume}, {ref.pages}" if ref.volume else "")
    authors = ", ".join(ref.authors) + (" et al." if ref.et_al else "")
    return ", ".join((authors, f"“{ref.title}”", journal, str(ref.year), *links))


def bibtex(ref: c.Reference) -> str:
    authors = [f"{a.split()[-1]}, {' '.join(a.split()[:-1])}" for a in ref.authors] + (["others"] if ref.et_al else [])
    fields = {"author": " and ".join(authors), "title": f"{{{ref.title}}}", "journal": ref.journal,
              "year": ref.year, "volume": ref.volume, "pages": ref.pages, "doi": ref.doi, "eprint": ref.arxiv,
              "archivePrefix": ref.arxiv and "arXiv"}
    body = "".join(f"  {k} = {{{v}}},\n" for k, v in fields.items() if v)
    return f"@article{{{ref.key},\n{body}}}"


def citation_section() -> str:
    main, *parts = c.REFERENCES
    return (
        f"## Citation\n\nIf you use {main.cite_for}, cite:\n\n{_citation(main)}.\n\n"
        "When you use these parts, also cite their sources:\n\n"
        + "\n".join(f"- {ref.cite_for}: {_citation(ref)}." for ref in parts)
        + "\n\n```bibtex\n" + "\n\n".join(bibtex(ref) for ref in c.REFERENCES) + "\n```"
    )


def _osm_rules() -> str:
    by_class: dict[int, list[str]] = {}
    for key, value, cls in c.OSM_TAG_RULES:
        by_class.setdefault(cls, []).append(f"`{key}={value}`")
    names = {k.value: k.name for k in c.OSM_CLASSES}
    return (
        "#### From OSM tags to classes (`noldo build --split osm`)\n\n"
        "noldo rasterises OSM polygons itself (osmnx + geopandas + rasterio) instead of the osmlanduse WMS "
        "rendering CromSS used, so labels can be rebuilt for any place and date. Areas only: points and lines "
        "are dropped (a way tagged `area=yes` is an area). A polygon takes the class of the first rule it "
        "matches, trying classes in priority order " + " > ".join(str(v) for v in c.OSM_PRIORITY) + ". "
        "Geometries are repaired (`make_valid`) and reprojected to the sample's UTM grid, then burned with "
        "the pixel-centre rule (`all_touched=False`) in order of decreasing area, so small nested features "
        "(a pond in a park in a residential area) win; equal areas go to the higher-priority class.\n\n"
        + table(("priority", "class", "OSM tags"), ((rank + 1, f"{cls} {names[cls]}", ", ".join(by_class[cls]))
                                                     for rank, cls in enumerate(c.OSM_PRIORITY)))
        + "\n\nQC against Dynamic World: `osm_coverage` is the labelled fraction; `osm_agreement` the share of "
        "pixels labelled in both whose OSM class maps to the DW class (every season counts). Both are stored in "
        "the index. A new `osm` split rejects samples below `--min-coverage`; when labels are added to an "
        "existing split (`--source osm --like ROOT/SPLIT`) every sample keeps its place, and `osm_qc` (with "
        "`osm_qc_reason`) flags those below `--min-coverage` or `--min-agreement`.\n\n"
        "**Licence.** OSM-derived arrays (`osm`) are a derivative database of OpenStreetMap: © OpenStreetMap "
        "contributors, under the Open Database License 1.0 (attribution and share-alike). They are kept in "
        "their own array with their own licence attribute."
    )


def _synthetic_section() -> str:
    from noldo.sources import synthetic as syn
    from noldo.sources import synthetic_labels as labels
    from noldo.sources import synthetic_world as world

    names = [k.name for k in c.DW_CLASSES]

    def confusions(row) -> str:
        return ", ".join(f"{names[j]} {p:.0%}" for j, p in sorted(enumerate(row), key=lambda x: -x[1]) if p > 0)

    def bands(spectra) -> str:
        return " / ".join(f"{spectra[b]:.0f}" for b in (3, 7, 11))  # B4, B8, B11

    rows = ((names[k], world.PATCH_SIGMA[k], bands(world.SUMMER[k]), bands(world.WINTER[k]),
             f"{world.S1_DB[k, 0]:g} / {world.S1_DB[k, 1]:g}", confusions(world.CONFUSION[k])) for k in range(world.K))
    return (
        "## The synthetic source (simulated data)\n\n"
        "**Everything `--source synthetic` writes is simulated; none of it is satellite data.** It exists "
        "so that the whole pipeline runs without network access, and as a test bed for learning from noisy "
        "labels: it stores the known truth (`truth`) beside the noisy labels (`dw`), and the measured noise "
        "rate of every sample and season with its causes (`noise_t0`, `noise_regional_t0` … in the index).\n\n"
        "Per sample, deterministically from (seed, candidate index):\n\n"
        f"1. **Truth**: a biome ({', '.join(world.BIOMES)}; chosen with latitude-dependent odds) sets Dirichlet "
        "class proportions; each class gets a smooth Gaussian random field with its own patch scale, and "
        "the truth is the arg-max of fields plus log proportions: coherent patches, not white noise.\n"
        "2. **Seasons**: the acquisition date follows the SSL4EO-S12 rule (reference date − location offset, "
        "± 15 days). Greenness follows the day of year (peak mid-July north, mid-January south, weaker "
        "towards the equator); cold places (|lat| > 42° or mountains) get seasonal snow on open land "
        f"in winter. With probability {syn.SyntheticSource().cloud_probability:g} a season has clouds "
        "(cover 5–90 %) with shadows; a season with less than "
        f"{world.MIN_VALID:.0%} unmasked pixels rejects the sample (reason `cloud`).\n"
        "3. **S2 L1C**: class reflectance interpolated between the summer and winter spectra by greenness, "
        "snow spectrum where snowy, ±6 % texture, additive path radiance (haze), cloud blending, shadow "
        "darkening, Gaussian sensor noise (1 % + 8 DN), clipped to 1–20000.\n"
        "4. **S1 GRD**: class σ⁰ in dB, vegetation brighter when green, wet snow −3 dB, wind on water "
        f"(0–6 dB per date), texture, multiplicative Gamma speckle with {world.SPECKLE_LOOKS} looks.\n"
        "5. **Dynamic World-like labels** (`--noise-model dw`, the default; `noldo/sources/synthetic_labels.py`). "
        "Like Dynamic World, the labels come from a classifier looking at the season's S2 image, so they "
        "go wrong where the image misleads: each pixel gets the class whose expected top-of-atmosphere "
        "spectrum (the season's greenness, nominal haze) is nearest in log reflectance (spread "
        f"{labels.SPREAD:g}), after a {labels.MIXING_SIGMA:g}-px blur (mixed pixels at boundaries), plus "
        f"smooth logit noise (amplitude {labels.LOGIT_NOISE:g}, patches of σ {labels.NOISE_SIGMA:g} px) of "
        "which a share, varying across the sample, persists from season to season. Spectrally similar "
        "classes are confused (shrub, grass and crops; trees and flooded vegetation; built and bare), thin "
        "cloud and haze brighten, shadow darkens towards water. With probability "
        f"{labels.REGIONAL_PROBABILITY:g} a sample has a regional systematic confusion ("
        + ", ".join(f"{names[a]} → {names[b]}" for a, b in labels.REGIONAL)
        + ") covering half to nine tenths of it, in every season: there the *majority* label of the class "
        "is wrong. Where the image shows seasonal snow the label is `snow_and_ice` — right for the image, "
        "so it is never counted as noise; its share is `dw_snow_tN`. Cloud pixels (opacity > "
        f"{world.CLOUD_ALPHA_MASKED}) are 255. Per sample and season the index records `noise_tN` (share of "
        "labelled, non-snow pixels whose label is not the truth) and its composition "
        + ", ".join(f"`noise_{c}_tN`" for c in labels.CAUSES)
        + " (wrong pixels attributed in that order: the regional confusion, within a pixel of a class "
        "boundary, under thin cloud or shadow, the rest). On the demo region about 27 % of the labels are "
        "wrong (Dynamic World agrees with expert annotators on about three quarters of the pixels), a "
        "four-season majority vote is right about 8 points more often than one season, and a pixel wrong "
        "in one season is wrong in the next about half the time. `--noise-model simple` is the model of "
        "stores built before it (`--noise`, default 0.2, of the pixels in coherent blobs moved to a "
        "confused class of the table below, after a ≈1.5-px displacement; independent of the images and "
        "seasons, and it counts snow as noise).\n\n"
        "![where and why the synthetic labels go wrong](docs/synthetic-noise.png)\n\n"
        "*The figure (`python -m noldo.noise_figure docs/synthetic-noise.png`): one demo sample in two "
        "seasons, its wrong labels coloured by cause; the noise rate by cause over 40 demo samples; and "
        "each true class's share of correct labels.*\n"
        "6. **Cloud scores** (`s2_cloud`): 100 × (1 − cloud opacity) × (1 − 1.2 × shadow), lowered a little "
        "by haze and by smooth noise (the score errs like a model does), clipped to 0–100; the index's "
        f"`s2_clear_tN` is the share of pixels at or above {c.CLEAR_THRESHOLD}.\n\n"
        + table(("class", "patch σ (px)", "summer B4 / B8 / B11", "winter B4 / B8 / B11", "S1 VV / VH (dB)",
                  "mislabelled as"), rows)
    )


def markdown() -> str:
    """The whole catalogue as Markdown (the content of CATALOG.md)."""
    return "\n\n".join(_sections()) + "\n"
