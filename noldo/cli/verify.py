"""``noldo verify ROOT``: schema, completeness and sha256 of every file, each problem with its repair."""

from __future__ import annotations

import json

import click

from noldo.cli.options import ROOT, progress
from noldo.location import StoreLocation
from noldo.verify import verify


@click.command("verify")
@ROOT
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--quick", is_flag=True,
              help="On object storage that keeps a SHA-256 per object (S3 ChecksumSHA256, which noldo asks for when it "
                   "writes), compare that with the manifest instead of reading every byte; other files are read.")
@click.pass_context
def command(ctx: click.Context, root: StoreLocation, as_json: bool, quick: bool) -> None:
    """Check a store: schema, completeness of every shard and the sha256 of every file.

    Each problem is printed as one line naming the file and the command that repairs it;
    the exit status is 1 if anything is wrong. ROOT may be an object-store URL.
    """
    problems, summary = verify(root, progress=progress(ctx), quick=quick)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        ctx.exit(1)
    if not as_json:
        click.echo(f"ok: {root} — {len(summary['splits'])} split(s), {summary['files']} files, "
                   f"{summary['bytes'] / 1e6:.1f} MB verified"
                   + (f" ({summary['bytes_read'] / 1e6:.1f} MB read, the rest by the store's own SHA-256)"
                      if quick else ""))
