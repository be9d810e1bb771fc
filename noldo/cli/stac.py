"""``noldo stac ROOT``: write the store's STAC catalogue and its stac-geoparquet files (docs/stac.md)."""

from __future__ import annotations

import json

import click

from noldo.cli.options import ROOT, StoreRoot, break_lock_option, progress
from noldo.location import StoreLocation
from noldo.lock import break_lock as _break
from noldo.store import list_splits


@click.command("stac")
@ROOT
@click.option("--out", type=StoreRoot(), default=None, metavar="DIR",
              help="Write the catalogue here instead (a new or empty directory, or an earlier noldo catalogue), "
                   "leaving ROOT as it is [default: ROOT/stac, listed in ROOT/manifest.json].")
@click.option("--href-base", metavar="URL",
              help="The URL where ROOT is published (e.g. s3://bucket/noldo): assets point below it. By default "
                   "they are relative inside ROOT/stac, and ROOT's path or URL otherwise.")
@break_lock_option
@click.pass_context
def command(ctx: click.Context, root: StoreLocation, out: StoreLocation | None, href_base: str | None,
            break_lock: bool) -> None:
    """Write a STAC 1.1 catalogue of ROOT: a Collection per split, an Item per sample and per label
    array of it, pointing into the Zarr arrays, and each split's Items as stac-geoparquet.

    \b
    Example: noldo stac demo-data && noldo verify demo-data
    """
    from noldo.stac_write import target_for, write_stac  # pystac and stac-geoparquet load in 0.25 s: when used

    if break_lock and target_for(root, out).inside:  # writing into ROOT/stac holds the splits' locks
        _break(root, *list_splits(root))
    click.echo(json.dumps(write_stac(root, out, href_base, progress=progress(ctx)), indent=2))
