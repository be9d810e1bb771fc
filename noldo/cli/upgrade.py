"""``noldo upgrade ROOT``: bring a store written by an older noldo to the current schema."""

from __future__ import annotations

import json

import click

from noldo.cli.options import ROOT, break_lock_option
from noldo.location import StoreLocation
from noldo.lock import break_lock as _break
from noldo.store import list_splits
from noldo.upgrade import upgrade


@click.command("upgrade")
@ROOT
@break_lock_option
def command(root: StoreLocation, break_lock: bool) -> None:
    """Upgrade a store written by an older noldo to the current store schema, in place.

    \b
    Schema 1.1 (CHANGELOG.md) adds the footprints of the GeoParquet index, CF attributes (xarray then
    masks nodata by itself) and the `time` array of acquisition times. Shards are not rewritten;
    the manifest is. Running it again finishes an interrupted upgrade and changes nothing after.
    """
    if break_lock:
        _break(root, *list_splits(root))
    click.echo(json.dumps(upgrade(root)))
