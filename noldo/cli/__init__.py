"""The ``noldo`` command line: one module per command, shared options in :mod:`noldo.cli.options`."""

from __future__ import annotations

import sys

import click

from noldo._version import __version__
from noldo.cli import (
    build,
    card,
    catalog,
    convert,
    download,
    info,
    manifest,
    plot,
    regions,
    stac,
    stats,
    upgrade,
    verify,
)
from noldo.cli.options import Group, setup_logging, storage_options


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="noldo")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", count=True, help="Less output: no progress bars, errors only.")
@click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="An option of the object store's file system for every ROOT URL, e.g. endpoint_url=http://... or "
                   "profile=work (s3fs, gcsfs, adlfs keywords; repeatable). Credentials are better left to the "
                   "store's own environment variables or profiles.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int, storage_option: tuple[str, ...]) -> None:
    """Build, download, verify and describe NoLDO-S12 stores (Zarr v3).

    \b
    A store ROOT is a directory or an object-store URL (s3://bucket/prefix, gs://, az://,
    hf://datasets/ORG/NAME@REVISION to read a release) with one Zarr group per split
    (ROOT/nol.zarr, ...), a Parquet sample index per split and a manifest.json with the
    sha256 of every file. Run `noldo catalog` for the schema, bands, legends and licences.
    S3 credentials and endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_REGION and AWS_ENDPOINT_URL (or a profile), as for the aws command.
    """
    ctx.obj = {"verbose": verbose, "quiet": quiet, "storage_options": storage_options(storage_option)}
    setup_logging(verbose, quiet)


for _module in (build, download, convert, regions, info, verify, manifest, upgrade, stats, card, stac, plot, catalog):
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
