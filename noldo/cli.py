"""The ``noldo`` command line: build, download, convert, verify, info, plot and catalog."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import click

from noldo import __version__
from noldo.errors import NoldoError
from noldo.sources import SOURCES

log = logging.getLogger("noldo")


class _UserError(click.ClickException):
    """Printed as one ``error: ...`` line on stderr, exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NoldoError as exc:
            raise _UserError(str(exc)) from None
        except OSError as exc:  # disk full, permissions, missing files: no traceback, say what failed
            where = f" ({exc.filename})" if exc.filename else ""
            raise _UserError(f"{exc.strerror or exc}{where}") from None


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING + 10 * (quiet - verbose)
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _dumps(obj: object) -> str:
    """Indented JSON with flat lists (shapes, dims) kept on one line."""
    return re.sub(r"\[\s+([^\[\]{}]+?)\s+\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m[1]) + "]",
                  json.dumps(obj, indent=2))


def _progress(ctx: click.Context) -> bool:
    """Progress bars only on a terminal, and not with -q."""
    return ctx.obj["quiet"] == 0 and sys.stderr.isatty()


ROOT = click.argument("root", type=click.Path(path_type=Path, file_okay=False))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="noldo")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", count=True, help="Less output: no progress bars, errors only.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Build, download, verify and describe NoLDO-S12 stores (Zarr v3).

    \b
    A store is a directory ROOT with one Zarr group per split (ROOT/nol.zarr, ...),
    a Parquet sample index per split and a manifest.json with the sha256 of every file.
    Run `noldo catalog` for the schema, bands, legends and licences.
    """
    ctx.obj = {"verbose": verbose, "quiet": quiet}
    _setup_logging(verbose, quiet)


@cli.command()
@click.option("--region", metavar="REGION",
              help="A built-in place (see `noldo regions`), a bbox W,S,E,N in degrees, a GeoJSON file "
                   "(Polygon/MultiPolygon/FeatureCollection) or a CSV table with columns lon,lat[,id].")
@click.option("--tiles", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Instead of --region: a DW tile table (dw_id,crs,bound1..bound4,height,width[,date]); each tile "
                   "keeps its own grid and label date (for --split dw_train/dw_test).")
@click.option("--source", type=click.Choice(SOURCES), default=None,
              help="Where pixels come from: `synthetic` simulates imagery and noisy labels with known truth "
                   "(no network; the demo), `earthengine` fetches S2/S1/Dynamic World, `osm` rasterises "
                   "OpenStreetMap land use [default: osm for --split osm].")
@click.option("--split", default="nol", show_default=True,
              help="The split to build: `nol` has 4 seasons, other splits one. `--split osm` builds "
                   "OpenStreetMap labels: a new `osm` split, or an `osm` array added to the split named by --like.")
@click.option("--out", "root", type=click.Path(path_type=Path), help="The store directory ROOT.")
@click.option("--like", type=click.Path(path_type=Path), default=None, metavar="ROOT/SPLIT",
              help="With --split osm: add the osm array to this existing split, for its own samples.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Accepted samples to build; candidates are drawn until this many pass "
                   "[default: 64, or every row of a table].")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the candidate locations and sources.")
@click.option("--tile-size", default=264, show_default=True, type=click.IntRange(min=8), help="Pixels per side.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Parallel fetch tasks on this machine (threads) [default: 2; earthengine: --ee-concurrency].")
@click.option("--scheduler", metavar="ADDRESS", help="Run fetch tasks on a dask.distributed cluster instead, "
                                                     "e.g. tcp://10.0.0.5:8786.")
@click.option("--overwrite", is_flag=True, help="Replace an existing build of this split made with other arguments.")
@click.option("--dry-run", is_flag=True, help="Search scenes and print the samples, requests and bytes a build "
                                               "would fetch; fetch no pixels, write nothing.")
@click.option("--noise", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="synthetic: fraction of pixels whose label is swapped for a confused class [default: 0.2].")
@click.option("--ee-project", metavar="PROJECT", help="earthengine: the Cloud project registered for Earth Engine "
                                                      "[env NOLDO_EE_PROJECT].")
@click.option("--ee-url", metavar="URL", help="earthengine: API endpoint [env NOLDO_EE_URL; default: the "
                                              "high-volume endpoint].")
@click.option("--ee-concurrency", type=click.IntRange(1, 40), default=None,
              help="earthengine: concurrent requests, at most the per-project quota of 40 [default: 16].")
@click.option("--max-cloud", type=click.FloatRange(0, 100), default=None,
              help="earthengine: S2 scenes need CLOUDY_PIXEL_PERCENTAGE below this [default: 20].")
@click.option("--allow-missing", is_flag=True, default=None,
              help="earthengine: keep samples lacking a modality in a season, with nodata there.")
@click.option("--scenes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="earthengine: rebuild published samples from a NoL id table (ids,sub1..sub4 = S2 system:index "
                   "per season); use with --region LOCATIONS.csv.")
@click.option("--season-dates", default=None, metavar="D0,D1,D2,D3",
              help="earthengine: replace the SSL4EO-S12 season reference dates.")
@click.option("--jitter/--no-jitter", default=None,
              help="earthengine: apply the per-location day offset of the SSL4EO-S12 recipe [default: on].")
@click.option("--labels", type=click.Path(exists=True, file_okay=False), default=None,
              help="earthengine with --tiles: a folder of expert label GeoTIFFs (dw_<tile>.tif, values 0 "
                   "unlabelled, 1–9 classes, 10 cloud) used as the dw array.")
@click.option("--osm-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="osm: a local extract (.osm, .osm.bz2, .osm.pbf) instead of Overpass; pixels outside it are 0.")
@click.option("--overpass-url", metavar="URL", default=None,
              help="osm: a private Overpass API [env NOLDO_OVERPASS_URL; default: the public one].")
@click.option("--min-coverage", type=click.FloatRange(0, 1), default=None,
              help="osm: reject samples whose labelled fraction is smaller [default: 0].")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
              help="osm with --like: flag (osm_qc) samples whose OSM classes agree less with Dynamic World.")
@click.pass_context
def build(ctx: click.Context, region: str | None, tiles: str | None, source: str | None, split: str,
          root: Path | None, like: Path | None, samples: int | None, seed: int,
          tile_size: int, workers: int | None, scheduler: str | None, overwrite: bool, dry_run: bool,
          noise: float | None, ee_project: str | None, ee_url: str | None, ee_concurrency: int | None,
          max_cloud: float | None, allow_missing: bool | None, scenes: str | None, season_dates: str | None,
          jitter: bool | None, labels: str | None, osm_file: str | None, overpass_url: str | None,
          min_coverage: float | None, min_agreement: float | None) -> None:
    """Build a split of a store, or resume it: re-running the same command continues where it stopped.

    \b
    Examples:
      noldo build --region demo --source synthetic --out demo-data --samples 64
      noldo build --region 11.3,47.9,11.7,48.2 --source earthengine --ee-project my-project \\
                  --out munich --samples 200

    Prints a JSON summary on stdout (samples, rejections with reasons, requests, bytes, seconds).
    Earth Engine: authenticate once with `earthengine authenticate`, or set NOLDO_EE_SERVICE_ACCOUNT_KEY
    to a service-account key file (README, "Earth Engine").
    """
    from noldo.build import BuildSpec, plan_build
    from noldo.build import build as run_build
    from noldo.regions import capacity, parse_region

    source = source or ("osm" if split == "osm" else None)
    if source is None:
        raise NoldoError("choose a --source: synthetic, earthengine or osm (see noldo build --help)")

    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else None

    if like is not None:
        from noldo.osm_labels import add_osm

        if split != "osm" or source != "osm":
            raise NoldoError("--like adds OpenStreetMap labels: use it with --split osm")
        if root is not None and Path(root).resolve() != like.parent.resolve():
            raise NoldoError(f"--out {root} differs from the store of --like ({like.parent}); leave --out out")
        options = {"osm_file": absolute(osm_file), "overpass_url": overpass_url, "min_coverage": min_coverage,
                   "min_agreement": min_agreement}
        summary = add_osm(like.parent, like.name.removesuffix(".zarr"),
                          {k: v for k, v in options.items() if v is not None}, workers=workers,
                          progress=_progress(ctx))
        click.echo(_dumps(summary))
        return
    if root is None:
        raise NoldoError("--out ROOT is required (the store directory)")
    if (region is None) == (tiles is None):
        raise NoldoError("give exactly one of --region and --tiles")
    region = region or tiles
    if samples is None:
        parsed = parse_region(region)
        samples = capacity(parsed) if parsed.geometry is None else 64

    chosen = {"noise": noise, "max_cloud": max_cloud, "allow_missing": allow_missing, "season_dates": season_dates,
              "jitter": jitter, "scenes": absolute(scenes), "labels": absolute(labels),
              "osm_file": absolute(osm_file), "min_coverage": min_coverage, "min_agreement": min_agreement}
    runtime = {"ee_project": ee_project, "ee_url": ee_url, "ee_concurrency": ee_concurrency,
               "overpass_url": overpass_url}
    allowed = {"synthetic": {"noise"},
               "earthengine": {"max_cloud", "allow_missing", "season_dates", "jitter", "scenes", "labels",
                               "ee_project", "ee_url", "ee_concurrency"},
               "osm": {"osm_file", "overpass_url", "min_coverage"}}[source]
    wrong = sorted(k for k, v in {**chosen, **runtime}.items() if v is not None and k not in allowed)
    if wrong:
        raise NoldoError(f"--{wrong[0].replace('_', '-')} does not apply to the {source} source")
    spec = BuildSpec(region, source, split, samples, seed, tile_size,
                     {k: v for k, v in chosen.items() if v is not None},
                     {k: v for k, v in runtime.items() if v is not None})
    if dry_run:
        summary = plan_build(spec, workers=workers, scheduler=scheduler, progress=_progress(ctx))
    else:
        summary = run_build(spec, root, workers=workers, scheduler=scheduler, overwrite=overwrite,
                            progress=_progress(ctx))
    click.echo(_dumps(summary))


@cli.command()
@click.option("--what", "what", multiple=True, type=click.Choice(["nol", "dw", "osm", "weights", "all"]),
              help="Published files of vikki23/NoLDO-S12 to fetch: nol, dw and osm are the three zips, weights the "
                   "four CromSS checkpoints (repeatable) [default: all].")
@click.option("--root", required=True, type=click.Path(path_type=Path), help="Where downloaded files are kept.")
@click.option("--revision", default=None, help="Hub revision (commit hash, tag or branch) [default: the one pinned "
                                               "in noldo.catalog].")
@click.option("--repo", default=None, help="Hub dataset of the published files [default: vikki23/NoLDO-S12].")
@click.option("--release", metavar="OWNER/NAME", default=None,
              help="Instead: a noldo Zarr release (a hub dataset with a manifest.json); --root becomes the store.")
@click.option("--split", "splits", multiple=True, help="With --release: only these splits (repeatable).")
@click.option("--dry-run", is_flag=True, help="List what would be fetched and how many bytes; fetch nothing.")
@click.pass_context
def download(ctx: click.Context, what: tuple[str, ...], root: Path, revision: str | None, repo: str | None,
             release: str | None, splits: tuple[str, ...], dry_run: bool) -> None:
    """Fetch the published NoLDO-S12 files or a noldo release, resumably, verifying every sha256.

    \b
    Sizes and sha256 come from the hub. Files arrive as NAME.part and get their name only once
    verified; a killed download resumes; a corrupt file is fetched again once, then reported.
    HF_ENDPOINT selects a mirror; HF_HUB_OFFLINE=1 works from what --root already holds.
    Examples:
      noldo download --what dw --root noldo-files && noldo convert noldo-files/ssl4eo_s12_dw.zip --out store
      noldo download --release my-org/noldo-s12-nol --root store && noldo verify store
    """
    from noldo.catalog import HF_REPO, HF_REVISION, PUBLISHED_FILES
    from noldo.download import download as run_download

    if release and what:
        raise NoldoError("--release fetches a whole noldo release; leave out --what")
    if splits and not release:
        raise NoldoError("--split applies to --release")
    chosen = list(PUBLISHED_FILES) if not what or "all" in what else list(dict.fromkeys(what))
    summary = run_download(chosen, root, revision or HF_REVISION, repo or HF_REPO, release, splits, dry_run,
                           progress=_progress(ctx))
    click.echo(_dumps(summary))


@cli.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "root", required=True, type=click.Path(path_type=Path), help="The store directory ROOT.")
@click.option("--osm-order", type=click.Choice(["noldo", "readme"]), default="noldo", show_default=True,
              help="How to read OSM label values: the §6.2 order (noldo) or the order of the CromSS README figure.")
@click.pass_context
def convert(ctx: click.Context, source: Path, root: Path, osm_order: str) -> None:
    """Convert an original NoLDO-S12 zip (or its unpacked folder), or DFC2020, into a noldo store.

    \b
    ssl4eo_s12_nol.zip -> split nol (Dynamic World noisy labels, 4 seasons)
    ssl4eo_s12_dw.zip  -> dw_train, dw_test (S2, S1, expert DW labels)
    ssl4eo_s12_osm.zip -> osm_train*, osm_test (S2, S1, OSM and DW labels)
    DFC2020 folders    -> dfc2020_val, dfc2020_test (labels mapped to 8 DW classes)
    Re-running continues an interrupted conversion.
    """
    from noldo.convert import convert as run_convert

    click.echo(_dumps(run_convert(source, root, osm_order, progress=_progress(ctx))))


@cli.command()
def regions() -> None:
    """List the built-in places usable as --region (name, bbox W,S,E,N, description)."""
    from noldo.regions import places

    for place in places().values():
        bbox = ",".join(f"{v:g}" for v in place.bbox)
        click.echo(f"{place.name:<14} {bbox:<34} {place.description}")


@cli.command()
@ROOT
def info(root: Path) -> None:
    """Describe a store as JSON: splits, samples, and per array its shape, dtype and bytes.

    \b
    `bytes` is the decoded size, `stored_bytes` the size on disk.
    Example: noldo info demo-data | python -m json.tool
    """
    from noldo.store import describe

    click.echo(_dumps(describe(root)))


@cli.command()
@ROOT
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def verify(ctx: click.Context, root: Path, as_json: bool) -> None:
    """Check a store: schema, completeness of every shard and the sha256 of every file.

    Each problem is printed as one line naming the file and the command that repairs it;
    the exit status is 1 if anything is wrong.
    """
    from noldo.verify import verify as run_verify

    problems, summary = run_verify(root, progress=_progress(ctx))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        ctx.exit(1)
    if not as_json:
        click.echo(f"ok: {root} — {len(summary['splits'])} split(s), {summary['files']} files, "
                   f"{summary['bytes'] / 1e6:.1f} MB verified")


@cli.command()
@ROOT
def manifest(root: Path) -> None:
    """Write ROOT/manifest.json afresh: size and sha256 of every file of the store."""
    from noldo.manifest import write_manifest
    from noldo.store import list_splits

    if not list_splits(root):
        raise NoldoError(f"{root} holds no noldo splits (no <split>.zarr groups)")
    result = write_manifest(root)
    click.echo(json.dumps({"files": len(result["files"]), "total_bytes": result["total_bytes"]}))


@cli.command()
@ROOT
@click.option("--split", default="nol", show_default=True, help="The split to read.")
@click.option("--sample", default="0", show_default=True, help="Sample index (0, 1, ...) or id (e.g. nol-0000012).")
@click.option("--season", type=int, default=None, help="Only this season (0-based); default: every season.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The PNG to write.")
def plot(root: Path, split: str, sample: str, season: int | None, out: Path) -> None:
    """Render one sample to a PNG: S2 true colour, S1 VV and the label maps with their legends."""
    from noldo.plot import save_plot

    click.echo(str(save_plot(root, split, sample, season, out)))


@cli.command()
def catalog() -> None:
    """Print the catalogue (Markdown): splits, store layout, bands, seasons, legends, licences."""
    from noldo.catalog_doc import markdown

    click.echo(markdown(), nl=False)


def main() -> None:
    """Entry point of the ``noldo`` command: every error, usage errors included, is one line on stderr."""
    try:
        code = cli.main(prog_name="noldo", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)  # click returns the code of ctx.exit() here
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "noldo"
        click.echo(f"error: {exc.format_message()} (see {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
