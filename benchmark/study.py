"""``python -m benchmark.study --config benchmark/configs/study-demo.yaml``: the whole benchmark in one command.

It builds the demo stores if they are missing (a 4-season ``nol`` split with noisy labels, and clean
``truth_train`` / ``truth_test`` splits elsewhere in the region), pretrains every variant of the config
(once, or once per seed of ``pretrain.seeds``), fine-tunes each and random init on the clean truth
labels over the seeds, and prints the results table, the label-noise rate and, per variant, what the
pretraining did with the noise against the truth (kept pixels, held-out accuracy, memorisation), with
their curves in ``curves.png``. benchmark/configs/study-selection.yaml is the ablation of selection and
smoothing (README, "Selection study"). Finished runs are kept and skipped, so an interrupted study
continues.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.runs import store_root
from noldo.errors import NoldoError
from noldo.markdown import table
from noldo.store import Split

#: The sections of a study config (see benchmark/configs/study-demo.yaml).
SECTIONS = ("store", "pretrain", "variants", "finetune")


def ensure_stores(data: Path, store: dict[str, Any]) -> None:
    """Build the demo splits that are not there yet (the synthetic source; resumable like any build)."""
    from noldo.build import BuildSpec, build
    from noldo.location import StoreLocation
    from noldo.store import list_splits

    have = list_splits(data) if StoreLocation.of(data).is_store_dir() else []
    wanted = [("nol", store["samples"], store.get("tile", 264), 0),
              ("truth_train", store["truth_train"], store["truth_tile"], 1),
              ("truth_test", store["truth_test"], store["truth_tile"], 2)]
    for split, samples, tile, seed in wanted:
        if split not in have:
            build(BuildSpec(store.get("region", "demo"), "synthetic", split, samples, seed, tile), data)


def pretrain_all(data: Path, run: Path, base: dict[str, Any],
                 variants: dict[str, dict[str, Any]]) -> dict[str, dict[int | None, Path]]:
    """Pretrain each variant into ``run/pretrain/<name>``, once per seed of ``base["seeds"]`` (into
    ``seed<k>/``) or once with the config's seed, skipping finished runs; returns each final checkpoint
    by variant and pretraining seed (None without ``seeds``)."""
    from benchmark.cromss.train import DEFAULTS, train
    from benchmark.runs import resolve_config

    checkpoints: dict[str, dict[int | None, Path]] = {}
    settings = {k: v for k, v in base.items() if k not in ("config", "seeds")}
    for name, overrides in variants.items():
        checkpoints[name] = {}
        for seed in base.get("seeds") or [None]:
            folder = run / "pretrain" / name / ("" if seed is None else f"seed{seed}")
            config = resolve_config(DEFAULTS, base.get("config"),
                                    {**settings, **overrides, **({} if seed is None else {"seed": seed})})
            if not (folder / "done").exists():
                train(data, config, folder, quiet=True)
                (folder / "done").write_text("finished\n")
            checkpoints[name][seed] = folder / "checkpoints" / "last.ckpt"
    return checkpoints


def finetune_all(data: Path, run: Path, settings: dict[str, Any], checkpoints: dict[str, dict[int | None, Path]],
                 single_modal: dict[str, str | None]) -> Path:
    """Every (weights, modality, mode, seed) fine-tuning run not yet in ``run/results.csv``; returns that CSV.
    With several pretraining seeds, the i-th fine-tuning seed takes the encoder of the i-th pretraining seed."""
    from benchmark.finetune import finetune

    results = run / "results.csv"
    done = set()
    if results.exists():
        finished = pd.read_csv(results)
        done = set(zip(finished["weights"], finished["modality"], finished["mode"], finished["seed"], strict=True))
    fixed = {k: v for k, v in settings.items() if k not in ("modalities", "modes", "seeds")}
    for modality in settings["modalities"]:
        for name in ["random", *checkpoints]:
            if single_modal.get(name) not in (None, modality):
                continue  # a single-modal S2 encoder has nothing to give an S1 model
            for mode in settings["modes"]:
                for i, seed in enumerate(settings["seeds"]):
                    if (name, modality, mode, seed) in done:
                        continue
                    paths = checkpoints.get(name, {})
                    path = "random" if name == "random" else str(paths.get(None) or list(paths.values())[i])
                    folder = run / "finetune" / f"{name}-{modality}-{mode}-seed{seed}"
                    finetune(data, {**fixed, "modality": modality, "weights": path, "weights_label": name,
                                    "mode": mode, "seed": seed, "results": str(results)}, folder, quiet=True)
    return results


def _pretraining_logs(run: Path, name: str) -> list[pd.DataFrame]:
    """The metrics.csv of each pretraining run (seed) of a variant, as per-epoch means."""
    logs = sorted((run / "pretrain" / name).glob("**/metrics.csv"))
    return [pd.read_csv(path).groupby("epoch").mean(numeric_only=True) for path in logs]


def diagnostics(data: Path, run: Path, variants: dict[str, dict[str, Any]], branch: str = "s2") -> str:
    """The simulated label-noise rate and, per variant (mean over its pretraining seeds), at the last epoch the
    share of correct labels and of correct kept pixels, and for the ``branch`` transferred its held-out
    accuracy against the truth (peak, with its epoch, and last) and its memorisation of wrong labels."""
    index = Split.open(data, "nol").index()
    noise = index[[c for c in index.columns if c.startswith("noise_t")]].to_numpy().mean()
    rows = []
    for name in variants:
        logs = _pretraining_logs(run, name)
        if not logs or "labels_right" not in logs[0]:
            rows.append([name, *["—"] * 6])
            continue
        kept, val, memorised = f"kept_precision_{branch}", f"val_truth_acc_{branch}", f"memorised_{branch}"
        last = pd.DataFrame([log.dropna(subset=["labels_right"]).iloc[-1] for log in logs]).mean()
        peaks = [log[val].dropna() for log in logs if val in log]
        rows.append([name, f"{last.labels_right:.3f}", f"{last[kept]:.3f}" if kept in last else "— (no selection)",
                     *([f"{sum(p.max() for p in peaks) / len(peaks):.3f} "
                        f"(epoch {'/'.join(str(int(p.idxmax())) for p in peaks)})",
                        f"{sum(p.iloc[-1] for p in peaks) / len(peaks):.3f}"] if peaks else ["—", "—"]),
                     f"{last[memorised]:.3f}" if memorised in last else "—",
                     len(logs)])
    header = ["pretraining", "correct noisy labels, all pixels", "correct, selected (weight 1) pixels",
              f"held-out accuracy vs truth ({branch}), peak (epoch)", "… last epoch",
              f"wrong labels memorised ({branch}), last epoch", "seeds"]
    return (f"Label noise of the demo `nol` split: {noise:.1%} of the labelled pixels disagree with the truth.\n\n"
            + table(header, rows))


def plot_study_curves(run: Path, variants: dict[str, dict[str, Any]], branch: str = "s2") -> Path | None:
    """``run/curves.png``: per variant (mean over seeds) the ``branch``'s held-out accuracy against the truth and
    its memorisation of wrong labels, by epoch."""
    from benchmark.runs import plot_panels

    panels: dict[str, dict[str, pd.Series]] = {}
    for title, key in ((f"held-out accuracy against the truth ({branch})", f"val_truth_acc_{branch}"),
                       (f"wrong labels memorised ({branch})", f"memorised_{branch}")):
        panels[title] = {name: pd.concat([log[key].dropna() for log in logs], axis=1).mean(axis=1)
                         for name in variants if (logs := [log for log in _pretraining_logs(run, name) if key in log])}
    return plot_panels(run / "curves.png", panels)


def _paths(config: dict[str, Any], data: str | Path | None, run: str | Path | None) -> tuple[Path, Path]:
    """The store and the study folder of a checked study config (arguments win over the config)."""
    missing = [k for k in SECTIONS if k not in config]
    if missing:
        raise NoldoError(f"the study config has no {', '.join(missing)}; see benchmark/configs/study-demo.yaml")
    unknown = sorted(set(config) - {*SECTIONS, "data", "run", "out"})
    if unknown:
        raise NoldoError(f"the study config has unknown keys {', '.join(unknown)}; known: data, run, "
                         f"{', '.join(SECTIONS)}")
    seeds = config["pretrain"].get("seeds")
    if seeds is not None and len(seeds) != len(config["finetune"].get("seeds", [])):
        raise NoldoError("pretrain seeds and finetune seeds pair up one to one: give as many of each")
    data, run = data or config.get("data"), run or config.get("run") or config.get("out")
    if not data or not run:
        raise NoldoError("the study needs a store and a folder: --data and --run, or data and run in the config")
    return store_root(str(data)), Path(run)


def study(config: dict[str, Any], data: str | Path | None = None, run: str | Path | None = None) -> str:
    """Run (or continue) the study of a config (see benchmark/configs/study-demo.yaml); returns the Markdown
    report, also written to ``run/table.md``. ``data`` and ``run`` default to the config's ``data`` and
    ``run`` (or its older name ``out``)."""
    from benchmark.report import results_table

    started = time.monotonic()
    data, run = _paths(config, data, run)
    run.mkdir(parents=True, exist_ok=True)
    ensure_stores(data, config["store"])
    variants = config["variants"]
    checkpoints = pretrain_all(data, run, config["pretrain"], variants)
    single = {name: v.get("single_modality") for name, v in variants.items()}
    results = finetune_all(data, run, config["finetune"], checkpoints, single)
    branch = config["finetune"]["modalities"][0]
    curves = plot_study_curves(run, variants, branch)
    minutes = (time.monotonic() - started) / 60
    text = "\n\n".join([f"Study on the `truth` labels of {data} ({config['finetune']['task']} task), "
                         f"{len(config['finetune']['seeds'])} seeds, in % (mean ± std):",
                         results_table(pd.read_csv(results), config["finetune"]["task"]),
                         diagnostics(data, run, variants, branch),
                         *([f"Pretraining curves: {curves}"] if curves else []),
                         f"Study time: {minutes:.1f} minutes."])
    (run / "table.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmark.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="e.g. benchmark/configs/study-demo.yaml")
    parser.add_argument("--data", type=store_root, metavar="ROOT", help="the store ROOT [from the config]")
    parser.add_argument("--run", type=Path, metavar="DIR", help="the study folder [from the config]")
    parser.add_argument("--out", dest="run", type=Path, help=argparse.SUPPRESS)  # the old name of --run
    args = parser.parse_args(argv)
    from benchmark.runs import command, read_yaml

    return command(lambda: study(read_yaml(args.config), args.data, args.run), print)


if __name__ == "__main__":
    main()
