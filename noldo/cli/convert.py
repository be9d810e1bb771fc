"""``noldo convert SOURCE --out ROOT``: the original NoLDO-S12 zips and DFC2020 into a noldo store."""

from __future__ import annotations

from pathlib import Path

import click

from noldo.cli.options import break_lock_option, dumps, out_option, progress
from noldo.convert import convert
from noldo.location import StoreLocation
from noldo.lock import break_lock as _break


@click.command("convert")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@out_option("The store to write (ROOT).")
@click.option("--osm-order", type=click.Choice(["noldo", "readme"]), default="noldo", show_default=True,
              help="How to read OSM label values: our order (noldo; CATALOG.md) or the order of the CromSS README "
                   "figure.")
@break_lock_option
@click.pass_context
def command(ctx: click.Context, source: Path, out: StoreLocation, osm_order: str, break_lock: bool) -> None:
    """Convert an original NoLDO-S12 zip (or its unpacked folder), or DFC2020, into a noldo store.

    \b
    ssl4eo_s12_nol.zip -> split nol (Dynamic World noisy labels, 4 seasons)
    ssl4eo_s12_dw.zip  -> dw_train, dw_test (S2, S1, expert DW labels)
    ssl4eo_s12_osm.zip -> osm_train*, osm_test (S2, S1, OSM and DW labels)
    DFC2020 folders    -> dfc2020_val, dfc2020_test (labels mapped to 8 DW classes)
    Re-running continues an interrupted conversion.
    """
    if break_lock:
        _break(out)
    click.echo(dumps(convert(source, out, osm_order, progress=progress(ctx))))
