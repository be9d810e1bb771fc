"""``noldo build``: a split from a region, or a source's arrays added to an existing split (``--like``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from noldo.build import BuildSpec, build, plan_build
from noldo.cli.options import (
    StoreRoot,
    break_lock_option,
    dumps,
    out_option,
    progress,
    source_option_names,
    source_options,
)
from noldo.errors import NoldoError
from noldo.location import StoreLocation
from noldo.lock import break_lock as _break
from noldo.regions import capacity, parse_region
from noldo.sources import SOURCES, source_class

#: Options that describe a new split's candidates; they do not apply when extending a split.
_NEW_SPLIT_ONLY = ("samples", "seed", "tile_size")


@click.command("build")
@click.option("--region", metavar="REGION",
              help="A built-in place (see `noldo regions`), a bbox W,S,E,N in degrees, a GeoJSON file "
                   "(Polygon/MultiPolygon/FeatureCollection) or a CSV table with columns lon,lat[,id].")
@click.option("--tiles", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Instead of --region: a DW tile table (dw_id,crs,bound1..bound4,height,width[,date]); each tile "
                   "keeps its own grid and label date (for --split dw_train/dw_test).")
@click.option("--source", type=click.Choice(list(SOURCES)), default=None,
              help="Where pixels come from: `synthetic` simulates imagery and noisy labels with known truth "
                   "(no network; the demo), `earthengine` fetches S2/S1/Dynamic World, `osm` rasterises "
                   "OpenStreetMap land use [default: osm for --split osm].")
@click.option("--split", default=None,
              help="The split to build [default: nol]: `nol` has 4 seasons, other splits one. `--split osm` builds "
                   "OpenStreetMap labels as a new `osm` split.")
@out_option("The store to write (ROOT).", required=False)
@click.option("--like", default=None, metavar="ROOT/SPLIT",
              help="Add the source's arrays to this existing split, for its own samples and grids (e.g. "
                   "`--source osm --like demo-data/nol`); every sample keeps its place, a failed quality check "
                   "is a flag (<source>_qc) in the index.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Accepted samples to build; candidates are drawn until this many pass "
                   "[default: 64, or every row of a table].")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the candidate locations and sources.")
@click.option("--tile-size", default=264, show_default=True, type=click.IntRange(min=8), help="Pixels per side.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Parallel fetch tasks on this machine (threads) [default: the source's, e.g. 2; earthengine: "
                   "--ee-concurrency].")
@click.option("--scheduler", metavar="ADDRESS", help="Run fetch tasks on a dask.distributed cluster instead, "
                                                     "e.g. tcp://10.0.0.5:8786.")
@click.option("--shard-writers", type=click.Choice(["client", "workers"]), default=None,
              help="Who encodes and writes the shards with --scheduler: `workers` write each shard straight to ROOT "
                   "(one owner per shard; ROOT must be reachable from every worker: an object-store URL, or a path "
                   "on a file system they all mount), `client` sends every byte through this process "
                   "[default: workers for an object-store ROOT, client for a local path].")
@click.option("--state", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Where the build keeps its resume state (fetched samples not yet in a shard, commit markers, "
                   "rejections) [default: ROOT/.noldo on disk; for an object-store ROOT a folder per URL below "
                   "$NOLDO_STATE_DIR or ~/.cache/noldo/state]. Re-run with the same DIR to resume.")
@break_lock_option
@click.option("--overwrite", is_flag=True, help="Replace an existing build of this split made with other arguments.")
@click.option("--dry-run", is_flag=True, help="Search scenes and print the samples, requests and bytes a build "
                                               "would fetch; fetch no pixels, write nothing.")
@source_options
@click.pass_context
def command(ctx: click.Context, region: str | None, tiles: str | None, source: str | None, split: str | None,
            out: StoreLocation | None, like: str | None, samples: int | None, seed: int, tile_size: int,
            workers: int | None, scheduler: str | None, shard_writers: str | None, state: Path | None,
            break_lock: bool, overwrite: bool, dry_run: bool, **given: Any) -> None:
    """Build a split of a store, or resume it: re-running the same command continues where it stopped.

    \b
    Examples:
      noldo build --region demo --source synthetic --out demo-data --samples 64
      noldo build --region 11.3,47.9,11.7,48.2 --source earthengine --ee-project my-project \\
                  --out munich --samples 200
      noldo build --source osm --like demo-data/nol --osm-file helsinki.osm.pbf
      AWS_PROFILE=work noldo build --region demo --source synthetic --out s3://bucket/demo

    Prints a JSON summary on stdout (samples, rejections with reasons, requests, bytes, seconds).
    Each source's options are prefixed with its name below. Earth Engine: authenticate once with
    `earthengine authenticate`, or set NOLDO_EE_SERVICE_ACCOUNT_KEY to a service-account key file
    (README, "Earth Engine").
    """
    source = source or ("osm" if split == "osm" else None)
    if source is None:
        raise NoldoError(f"choose a --source: {', '.join(SOURCES)} (see noldo build --help)")
    if like is not None:
        root, split = _extension(ctx, out, like, split, region, tiles)
    else:
        if out is None:
            raise NoldoError("--out ROOT is required (the store directory)")
        if (region is None) == (tiles is None):
            raise NoldoError("give exactly one of --region and --tiles")
        root, split, region = out, split or "nol", region or tiles
        if samples is None:
            parsed = parse_region(region)
            samples = capacity(parsed) if parsed.geometry is None else 64
    if state is not None:
        root = root.with_state(state)
    options = source_class(source).validate({k: given[k] for k in source_option_names()}, like is not None)
    runtime = {o.name for o in source_class(source).options if o.runtime}
    spec = BuildSpec(region, source, split, samples or 64, seed, tile_size,
                     {k: v for k, v in options.items() if k not in runtime},
                     {k: v for k, v in options.items() if k in runtime}, extend=like is not None)
    if dry_run:
        summary = plan_build(spec, root, workers=workers, scheduler=scheduler, progress=progress(ctx))
    else:
        if break_lock:
            _break(root, split)
        summary = build(spec, root, workers=workers, scheduler=scheduler, overwrite=overwrite, progress=progress(ctx),
                        shard_writers=shard_writers)
    click.echo(dumps(summary))
    if not summary.get("complete", True):
        left = summary["unfinished"]
        raise NoldoError(f"{left['total']} sample(s) could not be finished ({', '.join(left['reasons'])}); every "
                         "other sample is kept: re-run the same command to retry them")


def _extension(ctx: click.Context, out: StoreLocation | None, like: str, split: str | None, region: str | None,
               tiles: str | None) -> tuple[StoreLocation, str]:
    """The store and split that ``--like ROOT/SPLIT`` names, refusing arguments that describe a new split."""
    parent, _, name = like.rstrip("/").rpartition("/")
    root = StoreRoot().convert(parent or ".", None, ctx)
    if split not in (None, "osm"):  # `--split osm --like` is the older spelling of `--source osm --like`
        raise NoldoError("--like names the split to add arrays to; leave out --split")
    if region is not None or tiles is not None:
        raise NoldoError("--like builds for the samples of an existing split; leave out --region and --tiles")
    given = [n for n in _NEW_SPLIT_ONLY if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT]
    if given:
        raise NoldoError(f"--{given[0].replace('_', '-')} does not apply with --like (the split has its samples)")
    if out is not None and out != root:
        raise NoldoError(f"--out {out} differs from the store of --like ({root}); leave --out out")
    return root, name.removesuffix(".zarr")
