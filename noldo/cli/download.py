"""``noldo download --out ROOT``: the published NoLDO-S12 files or a noldo release, verified by sha256."""

from __future__ import annotations

import click

from noldo.catalog import HF_REPO, HF_REVISION, PUBLISHED_FILES
from noldo.cli.options import dumps, out_option, progress
from noldo.download import download
from noldo.errors import NoldoError
from noldo.location import StoreLocation


@click.command("download")
@click.option("--what", "what", multiple=True, type=click.Choice(["nol", "dw", "osm", "weights", "all"]),
              help="Published files of vikki23/NoLDO-S12 to fetch: nol, dw and osm are the three zips, weights the "
                   "four CromSS checkpoints (repeatable) [default: all].")
@out_option("Where downloaded files are kept; with --release, the store (a directory or an object-store URL).",
            aliases=("--root",))
@click.option("--revision", default=None, help="Hub revision (commit hash, tag or branch) [default: the one pinned "
                                               "in noldo.catalog].")
@click.option("--repo", default=None, help=f"Hub dataset of the published files [default: {HF_REPO}].")
@click.option("--release", metavar="OWNER/NAME", default=None,
              help="Instead: a noldo Zarr release (a hub dataset with a manifest.json); --out becomes the store.")
@click.option("--split", "splits", multiple=True, help="With --release: only these splits (repeatable).")
@click.option("--dry-run", is_flag=True, help="List what would be fetched and how many bytes; fetch nothing.")
@click.pass_context
def command(ctx: click.Context, what: tuple[str, ...], out: StoreLocation, revision: str | None, repo: str | None,
            release: str | None, splits: tuple[str, ...], dry_run: bool) -> None:
    """Fetch the published NoLDO-S12 files or a noldo release, resumably, verifying every sha256.

    \b
    Sizes and sha256 come from the hub. Files arrive as NAME.part and get their name only once
    verified; a killed download resumes; a corrupt file is fetched again once, then reported.
    HF_ENDPOINT selects a mirror; HF_HUB_OFFLINE=1 works from what --out already holds.
    Examples:
      noldo download --what dw --out noldo-files && noldo convert noldo-files/ssl4eo_s12_dw.zip --out store
      noldo download --release my-org/noldo-s12-nol --out store && noldo verify store
    """
    if release and what:
        raise NoldoError("--release fetches a whole noldo release; leave out --what")
    if splits and not release:
        raise NoldoError("--split applies to --release")
    chosen = list(PUBLISHED_FILES) if not what or "all" in what else list(dict.fromkeys(what))
    summary = download(chosen, out, revision or HF_REVISION, repo or HF_REPO, release, splits, dry_run,
                       progress=progress(ctx))
    click.echo(dumps(summary))
