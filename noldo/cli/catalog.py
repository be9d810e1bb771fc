"""``noldo catalog``: the dataset catalogue as Markdown."""

from __future__ import annotations

import click

from noldo.catalog_doc import markdown


@click.command("catalog")
def command() -> None:
    """Print the catalogue (Markdown): splits, store layout, bands, seasons, legends, licences."""
    click.echo(markdown(), nl=False)
