"""``noldo card ROOT``: write the store's dataset card and Croissant description (docs/card.md)."""

from __future__ import annotations

import json

import click

from noldo.card import write_card
from noldo.catalog import HF_REPO
from noldo.cli.options import ROOT, StoreRoot, break_lock_option
from noldo.location import StoreLocation
from noldo.lock import break_lock as _break
from noldo.store import list_splits


@click.command("card")
@ROOT
@click.option("--out", type=StoreRoot(), default=None, metavar="DIR",
              help="Write the two files here instead, leaving ROOT as it is (copy them into ROOT and run noldo "
                   "manifest ROOT before publishing) [default: ROOT].")
@click.option("--repo", default=HF_REPO, show_default=True, metavar="OWNER/NAME",
              help="The hub dataset the store is published as: the card's loading commands and the Croissant url.")
@break_lock_option
def command(root: StoreLocation, out: StoreLocation | None, repo: str, break_lock: bool) -> None:
    """Write ROOT/README.md (a Hugging Face dataset card) and ROOT/croissant.json (Croissant 1.0), and list
    both in ROOT/manifest.json, so the store can be uploaded to the hub as it is.

    \b
    Example: noldo card demo-data && noldo verify demo-data
    """
    if break_lock and out is None:
        _break(root, *list_splits(root))
    click.echo(json.dumps({"written": write_card(root, out, repo)}))
