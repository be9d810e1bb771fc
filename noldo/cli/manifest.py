"""``noldo manifest ROOT``: write the store's manifest afresh."""

from __future__ import annotations

import json

import click

from noldo.cli.options import ROOT, break_lock_option
from noldo.location import StoreLocation
from noldo.lock import break_lock as _break
from noldo.lock import writing
from noldo.manifest import write_manifest
from noldo.store import require_splits


@click.command("manifest")
@ROOT
@break_lock_option
def command(root: StoreLocation, break_lock: bool) -> None:
    """Write ROOT/manifest.json afresh: size and sha256 of every file of the store."""
    splits = require_splits(root)
    if break_lock:
        _break(root, *splits)
    with writing(root, *splits, command="noldo manifest"):  # no split changes while it is hashed
        result = write_manifest(root)
    click.echo(json.dumps({"files": len(result["files"]), "total_bytes": result["total_bytes"]}))
