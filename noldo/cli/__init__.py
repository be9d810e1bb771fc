"""The ``noldo`` command line: one module per command, shared options in :mod:`noldo.cli.options`."""

from __future__ import annotations

import sys

import click

from noldo._version import __version__
from noldo.cli import build, catalog, convert, download, info, manifest, plot, regions, verify
from noldo.cli.options import Group, setup_logging


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    setup_logging(verbose, quiet)


for _module in (build, download, convert, regions, info, verify, manifest, plot, catalog):
    cli.add_command(_module.command)


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
