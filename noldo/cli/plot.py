"""``noldo plot ROOT --png FILE``: one sample rendered to a PNG."""

from __future__ import annotations

from pathlib import Path

import click

from noldo.cli.options import ROOT, Aliased
from noldo.location import StoreLocation
from noldo.plot import save_plot


@click.command("plot")
@ROOT
@click.option("--split", default="nol", show_default=True, help="The split to read.")
@click.option("--sample", default="0", show_default=True, help="Sample index (0, 1, ...) or id (e.g. nol-0000012).")
@click.option("--season", type=int, default=None, help="Only this season (0-based); default: every season.")
@click.option("--png", cls=Aliased, aliases=("--out",), type=click.Path(path_type=Path, dir_okay=False),
              required=True, metavar="FILE", help="The PNG to write.")
def command(root: StoreLocation, split: str, sample: str, season: int | None, png: Path) -> None:
    """Render one sample to a PNG: S2 true colour, S1 VV and the label maps with their legends."""
    click.echo(str(save_plot(root, split, sample, season, png)))
