"""``noldo stats ROOT --split nol``: per-band statistics over valid pixels, kept in the split's attributes."""

from __future__ import annotations

import os

import click
from tqdm.auto import tqdm

from noldo.cli.options import ROOT, break_lock_option, dumps, progress
from noldo.location import StoreLocation
from noldo.lock import break_lock as _break
from noldo.markdown import table
from noldo.stats import PERCENTILES, stats, task_count

_COLUMNS = ("count", "mean", "std", "min", "max", *(f"p{p}" for p in PERCENTILES))


def _cell(value: object) -> object:
    return f"{value:.6g}" if isinstance(value, float) else value


def report(result: dict) -> str:
    """The statistics as Markdown tables: one row per band, one row per class of each label array."""
    parts = []
    for name in ("s2", "s1"):
        if name in result:
            parts.append(f"{name}\n\n" + table(("band", *_COLUMNS), ((band, *(_cell(values.get(c)) for c in _COLUMNS))
                                                                     for band, values in result[name].items())))
    for name in ("dw", "osm", "truth"):
        if name in result:
            parts.append(f"{name} ({result[name]['count']:,} labelled pixels)\n\n" + table(
                ("value", "class", "pixels", "share"),
                ((c["value"], label, f"{c['count']:,}", f"{c['share']:.4f}" if c["share"] is not None else None)
                 for label, c in result[name]["classes"].items())))
    return "\n\n".join(parts)


@click.command("stats")
@ROOT
@click.option("--split", default="nol", show_default=True, help="The split to summarise.")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True,
              help="Threads reading and counting shards.")
@click.option("--store/--no-store", default=True, show_default=True,
              help="Keep the statistics in the split's attributes (`statistics`), or only print them "
                   "(for a store you cannot write, such as a release on the hub).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON instead of tables.")
@break_lock_option
@click.pass_context
def command(ctx: click.Context, root: StoreLocation, split: str, workers: int, store: bool, as_json: bool,
            break_lock: bool) -> None:
    """Per-band count, mean, std, min, max and 1/2/98/99 percentiles over the valid pixels of a split.

    \b
    S2 digital numbers and the label classes are counted exactly; S1 dB in 0.01 dB bins (its
    percentiles are within one bin; count, mean, std, min and max are exact). Shards are streamed
    with dask, so memory does not grow with the store. The statistics go into the split's group
    attributes, where `python -m benchmark.cromss --stats store` finds them.
    Example: noldo stats demo-data --split nol
    """
    if break_lock and store:
        _break(root, split)
    with tqdm(total=task_count(root, split), desc=f"stats {split}", unit="shard",
              disable=not progress(ctx), leave=False) as bar:
        result = stats(root, split, workers, bar.update, store=store)
    click.echo(dumps(result) if as_json else report(result))
