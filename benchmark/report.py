"""``python -m benchmark.report RESULTS.csv``: the results table in the layout of the paper's tables.

Rows are weights × input modality, columns frozen / fine-tuned × OA, AA, mIoU, mF1 in %, mean ± std
over seeds. As in the paper, random init comes first, then the baselines (``torchgeo-…``: TorchGeo's
SSL4EO-S12 weights, docs/weights.md), then the other weights in the order they were run.
``--paper dw|osm|dfc2020`` prints the numbers reported by the paper beside ours (shipped in
``benchmark/data/paper_results.csv``, labelled as the paper's).
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import pandas as pd

from noldo.errors import NoldoError
from noldo.markdown import table

METRICS = ("oa", "aa", "miou", "mf1")
MODES = ("frozen", "finetune")
NAMES = {"oa": "OA", "aa": "AA", "miou": "mIoU", "mf1": "mF1"}
HEADER = ["Input", "Weights", "seeds", *(f"{'Frozen' if m == 'frozen' else 'FT'} {NAMES[k]}" for m in MODES
                                         for k in METRICS)]


def _cell(values: pd.Series) -> str:
    if values.empty:
        return "—"
    mean, std = 100 * values.mean(), 100 * values.std(ddof=0)
    return f"{mean:.2f}±{std:.2f}" if len(values) > 1 else f"{mean:.2f}"


def _rank(weights: object) -> int:
    """Where a weights label's rows go: random init, then the TorchGeo baselines, then the rest."""
    return 0 if weights == "random" else 1 if str(weights).startswith("torchgeo-") else 2


def read_results(path: str | Path) -> pd.DataFrame:
    """A results CSV as written by ``benchmark.finetune``."""
    path = Path(path)
    if not path.is_file():
        raise NoldoError(f"{path} does not exist")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise NoldoError(f"cannot read {path}: {exc}") from None


def results_table(results: pd.DataFrame, task: str | None = None) -> str:
    """Markdown table of a results CSV (as written by ``benchmark.finetune``), one task."""
    needed = [*(["task"] if task is not None else []), "modality", "weights", "mode", "seed", *METRICS]
    missing = [c for c in needed if c not in results]
    if missing:
        raise NoldoError(f"not a results table of benchmark.finetune: no column {', '.join(missing)}")
    if task is not None:
        results = results[results["task"] == task]
    if results.empty:
        raise NoldoError(f"no results{f' for task {task}' if task else ''}")
    order = sorted(dict.fromkeys(["random", *results["weights"]]), key=_rank)
    rows = []
    for modality in sorted(results["modality"].unique()):
        for weights in order:
            runs = results[(results["modality"] == modality) & (results["weights"] == weights)]
            if runs.empty:
                continue
            cells = [_cell(runs[runs["mode"] == mode][metric]) for mode in MODES for metric in METRICS]
            seeds = runs.groupby("mode")["seed"].nunique().max()
            rows.append([modality.upper(), weights, seeds, *cells])
    return table(HEADER, rows)


def paper_table(dataset: str) -> str:
    """The paper's reported numbers for ``dw``, ``osm`` or ``dfc2020`` (ResNet-50 and ViT-L rows)."""
    with resources.files("benchmark").joinpath("data/paper_results.csv").open() as f:
        reported = pd.read_csv(f, comment="#")
    rows = reported[reported["dataset"] == dataset]
    if rows.empty:
        raise NoldoError(f"the paper reports dw, osm and dfc2020, not {dataset!r}")
    columns = [f"{m}_{k}" for m in MODES for k in METRICS]
    cells = [[row.input, row.backbone, row.weights, *(getattr(row, c) for c in columns)] for row in rows.itertuples()]
    return (f"Reported by the paper (CromSS, IEEE TGRS 2025), {dataset}, in %:\n\n"
            + table(["Input", "Backbone", "Weights", *HEADER[3:]], cells))


def report(results: str | Path, task: str | None = None, paper: str | None = None) -> str:
    """The Markdown of ``python -m benchmark.report``: the results table, then the paper's numbers."""
    text = results_table(read_results(results), task)
    return text + "\n\n" + paper_table(paper) if paper else text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a results CSV written by benchmark.finetune")
    parser.add_argument("--task", help="only this task (dw, osm, dfc2020, truth)")
    parser.add_argument("--paper", choices=["dw", "osm", "dfc2020"], help="also print the paper's numbers")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown to FILE too")
    parser.add_argument("--out", dest="markdown", type=Path, help=argparse.SUPPRESS)  # the old name of --markdown
    args = parser.parse_args(argv)
    from benchmark.runs import command

    text = command(lambda: report(args.results, args.task, args.paper), print)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
