"""The ``noldo`` command line: build, download, convert, verify, info, plot and catalog."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from noldo import __version__
from noldo.errors import NoldoError

log = logging.getLogger("noldo")


class _UserError(click.ClickException):
    """Printed as one ``error: ...`` line on stderr, exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NoldoError as exc:
            raise _UserError(str(exc)) from None
        except OSError as exc:  # disk full, permissions, missing files: no traceback, say what failed
            where = f" ({exc.filename})" if exc.filename else ""
            raise _UserError(f"{exc.strerror or exc}{where}") from None


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING + 10 * (quiet - verbose)
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _progress(ctx: click.Context) -> bool:
    """Progress bars only on a terminal, and not with -q."""
    return ctx.obj["quiet"] == 0 and sys.stderr.isatty()


ROOT = click.argument("root", type=click.Path(path_type=Path, file_okay=False))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    _setup_logging(verbose, quiet)


@cli.command()
@ROOT
def info(root: Path) -> None:
    """Describe a store as JSON: splits, samples, and per array its shape, dtype and bytes.

    \b
    `bytes` is the decoded size, `stored_bytes` the size on disk.
    Example: noldo info demo-data | python -m json.tool
    """
    from noldo.store import describe

    click.echo(json.dumps(describe(root), indent=2))


@cli.command()
@ROOT
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def verify(ctx: click.Context, root: Path, as_json: bool) -> None:
    """Check a store: schema, completeness of every shard and the sha256 of every file.

    Each problem is printed as one line naming the file and the command that repairs it;
    the exit status is 1 if anything is wrong.
    """
    from noldo.verify import verify as run_verify

    problems, summary = run_verify(root, progress=_progress(ctx))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        ctx.exit(1)
    if not as_json:
        click.echo(f"ok: {root} — {len(summary['splits'])} split(s), {summary['files']} files, "
                   f"{summary['bytes'] / 1e6:.1f} MB verified")


@cli.command()
@ROOT
def manifest(root: Path) -> None:
    """Write ROOT/manifest.json afresh: size and sha256 of every file of the store."""
    from noldo.manifest import write_manifest
    from noldo.store import list_splits

    if not list_splits(root):
        raise NoldoError(f"{root} holds no noldo splits (no <split>.zarr groups)")
    result = write_manifest(root)
    click.echo(json.dumps({"files": len(result["files"]), "total_bytes": result["total_bytes"]}))


@cli.command()
def catalog() -> None:
    """Print the catalogue (Markdown): splits, store layout, bands, seasons, legends, licences."""
    from noldo.catalog_doc import markdown

    click.echo(markdown(), nl=False)


def main() -> None:
    """Entry point of the ``noldo`` command."""
    cli(prog_name="noldo")
