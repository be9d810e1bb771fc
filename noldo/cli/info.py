"""``noldo info ROOT``: a store described as JSON."""

from __future__ import annotations

import click

from noldo.cli.options import ROOT, dumps
from noldo.location import StoreLocation
from noldo.store import describe


@click.command("info")
@ROOT
def command(root: StoreLocation) -> None:
    """Describe a store as JSON: splits, samples, and per array its shape, dtype and bytes.

    \b
    `bytes` is the decoded size, `stored_bytes` the size on disk.
    Example: noldo info demo-data | python -m json.tool
    """
    click.echo(dumps(describe(root)))
