"""``noldo regions``: the built-in places usable as ``--region``."""

from __future__ import annotations

import click

from noldo.regions import places


@click.command("regions")
def command() -> None:
    """List the built-in places usable as --region (name, bbox W,S,E,N, description)."""
    for place in places().values():
        bbox = ",".join(f"{v:g}" for v in place.bbox)
        click.echo(f"{place.name:<14} {bbox:<34} {place.description}")
