"""``python -m benchmark.report RESULTS.csv``: the results table in the layout of the paper's tables.

Rows are weights × input modality, columns frozen / fine-tuned × OA, AA, mIoU, mF1 in %, mean ± std
over seeds. ``--paper dw|osm|dfc2020`` prints the numbers reported by the paper beside ours (shipped
in ``benchmark/data/paper_results.csv``, labelled as the paper's).
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import pandas as pd

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


def results_table(results: pd.DataFrame, task: str | None = None) -> str:
    """Markdown table of a results CSV (as written by ``benchmark.finetune``), one task."""
    if task is not None:
        results = results[results["task"] == task]
    if results.empty:
        raise ValueError(f"no results{f' for task {task}' if task else ''}")
    order = list(dict.fromkeys(["random", *results["weights"]]))
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for modality in sorted(results["modality"].unique()):
        for weights in order:
            rows = results[(results["modality"] == modality) & (results["weights"] == weights)]
            if rows.empty:
                continue
            cells = [_cell(rows[rows["mode"] == mode][metric]) for mode in MODES for metric in METRICS]
            seeds = rows.groupby("mode")["seed"].nunique().max()
            lines.append(f"| {modality.upper()} | {weights} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table(dataset: str) -> str:
    """The paper's reported numbers for ``dw``, ``osm`` or ``dfc2020`` (ResNet-50 and ViT-L rows)."""
    with resources.files("benchmark").joinpath("data/paper_results.csv").open() as f:
        table = pd.read_csv(f, comment="#")
    rows = table[table["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"the paper reports dw, osm and dfc2020, not {dataset!r}")
    header = ["Input", "Backbone", "Weights", *HEADER[3:]]
    lines = [f"Reported by the paper (CromSS, IEEE TGRS 2025), {dataset}, in %:", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    columns = [f"{m}_{k}" for m in MODES for k in METRICS]
    for row in rows.itertuples():
        lines.append(f"| {row.input} | {row.backbone} | {row.weights} | " + " | ".join(getattr(row, c)
                                                                                  for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a results CSV written by benchmark.finetune")
    parser.add_argument("--task", help="only this task (dw, osm, dfc2020, truth)")
    parser.add_argument("--paper", choices=["dw", "osm", "dfc2020"], help="also print the paper's numbers")
    parser.add_argument("--out", type=Path, help="write the Markdown here too")
    args = parser.parse_args(argv)
    from benchmark.runs import fail

    if not args.results.is_file():
        fail(f"{args.results} does not exist")
    try:
        text = results_table(pd.read_csv(args.results), args.task)
        if args.paper:
            text += "\n\n" + paper_table(args.paper)
    except (ValueError, KeyError) as exc:
        fail(str(exc))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
