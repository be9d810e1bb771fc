"""``python -m benchmark.study --config benchmark/configs/study-demo.yaml``: the whole benchmark in one command.

It builds the demo stores if they are missing (a 4-season ``nol`` split with noisy labels, and clean
``truth_train`` / ``truth_test`` splits elsewhere in the region), pretrains every variant of the config
(CromSS middle and late fusion, multi-modal without selection and smoothing, single-modal noisy
labels), fine-tunes each and random init on the clean truth labels, frozen and fine-tuned, over the
seeds, and prints the results table with the label-noise rate and the selection precision. Finished
runs are kept and skipped, so an interrupted study continues.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd

from noldo.errors import NoldoError
from noldo.markdown import table
from noldo.store import Split

#: The sections of a study config (see benchmark/configs/study-demo.yaml).
SECTIONS = ("store", "pretrain", "variants", "finetune")


def ensure_stores(data: Path, store: dict[str, Any]) -> None:
    """Build the demo splits that are not there yet (the synthetic source; resumable like any build)."""
    from noldo.build import BuildSpec, build
    from noldo.store import list_splits

    have = list_splits(data) if data.is_dir() else []
    wanted = [("nol", store["samples"], 264, 0), ("truth_train", store["truth_train"], store["truth_tile"], 1),
              ("truth_test", store["truth_test"], store["truth_tile"], 2)]
    for split, samples, tile, seed in wanted:
        if split not in have:
            build(BuildSpec(store.get("region", "demo"), "synthetic", split, samples, seed, tile), data)


def pretrain_all(data: Path, run: Path, base: dict[str, Any], variants: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Pretrain each variant into ``run/pretrain/<name>`` (skipping finished ones); returns each final checkpoint."""
    from benchmark.cromss.train import DEFAULTS, train
    from benchmark.runs import resolve_config

    checkpoints = {}
    for name, overrides in variants.items():
        folder = run / "pretrain" / name
        checkpoint = folder / "checkpoints" / "last.ckpt"
        settings = {k: v for k, v in base.items() if k != "config"}
        config = resolve_config(DEFAULTS, base.get("config"), {**settings, **overrides})
        if not (folder / "done").exists():
            train(data, config, folder, quiet=True)
            (folder / "done").write_text("finished\n")
        checkpoints[name] = checkpoint
    return checkpoints


def finetune_all(data: Path, run: Path, settings: dict[str, Any], checkpoints: dict[str, Path],
                 single_modal: dict[str, str | None]) -> Path:
    """Every (weights, modality, mode, seed) fine-tuning run not yet in ``run/results.csv``; returns that CSV."""
    from benchmark.finetune import finetune

    results = run / "results.csv"
    done = set()
    if results.exists():
        finished = pd.read_csv(results)
        done = set(zip(finished["weights"], finished["modality"], finished["mode"], finished["seed"], strict=True))
    fixed = {k: v for k, v in settings.items() if k not in ("modalities", "modes", "seeds")}
    weights = {"random": "random", **{name: str(path) for name, path in checkpoints.items()}}
    for modality in settings["modalities"]:
        for name, path in weights.items():
            if single_modal.get(name) not in (None, modality):
                continue  # a single-modal S2 encoder has nothing to give an S1 model
            for mode in settings["modes"]:
                for seed in settings["seeds"]:
                    if (name, modality, mode, seed) in done:
                        continue
                    folder = run / "finetune" / f"{name}-{modality}-{mode}-seed{seed}"
                    finetune(data, {**fixed, "modality": modality, "weights": path, "weights_label": name,
                                    "mode": mode, "seed": seed, "results": str(results)}, folder, quiet=True)
    return results


def diagnostics(data: Path, run: Path, variants: dict[str, dict[str, Any]]) -> str:
    """The simulated label-noise rate and, per pretraining run, the selection precision at its last epoch."""
    index = Split.open(data, "nol").index()
    noise = index[[c for c in index.columns if c.startswith("noise_t")]].to_numpy().mean()
    rows = []
    for name in variants:
        metrics = run / "pretrain" / name / "metrics.csv"
        logged = pd.read_csv(metrics) if metrics.exists() else pd.DataFrame()
        if "kept_precision_s2" not in logged:
            rows.append([name, "—", "— (no selection)"])
            continue
        last = logged.dropna(subset=["kept_precision_s2"]).iloc[-1]
        rows.append([name, f"{last.labels_right:.3f}", f"{last.kept_precision_s2:.3f}"])
    header = ["pretraining", "correct noisy labels, all pixels", "correct, selected (weight 1) pixels"]
    return (f"Label noise of the demo `nol` split: {noise:.1%} of the labelled pixels disagree with the truth.\n\n"
            + table(header, rows))


def _paths(config: dict[str, Any], data: str | Path | None, run: str | Path | None) -> tuple[Path, Path]:
    """The store and the study folder of a checked study config (arguments win over the config)."""
    missing = [k for k in SECTIONS if k not in config]
    if missing:
        raise NoldoError(f"the study config has no {', '.join(missing)}; see benchmark/configs/study-demo.yaml")
    unknown = sorted(set(config) - {*SECTIONS, "data", "run", "out"})
    if unknown:
        raise NoldoError(f"the study config has unknown keys {', '.join(unknown)}; known: data, run, "
                         f"{', '.join(SECTIONS)}")
    data, run = data or config.get("data"), run or config.get("run") or config.get("out")
    if not data or not run:
        raise NoldoError("the study needs a store and a folder: --data and --run, or data and run in the config")
    return Path(data), Path(run)


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
    minutes = (time.monotonic() - started) / 60
    text = "\n\n".join([f"Demo study on the `truth` labels of {data} ({config['finetune']['task']} task), "
                         f"{len(config['finetune']['seeds'])} seeds, in % (mean ± std):",
                         results_table(pd.read_csv(results), config["finetune"]["task"]),
                         diagnostics(data, run, variants), f"Study time: {minutes:.1f} minutes."])
    (run / "table.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmark.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="e.g. benchmark/configs/study-demo.yaml")
    parser.add_argument("--data", type=Path, metavar="ROOT", help="the store ROOT [from the config]")
    parser.add_argument("--run", type=Path, metavar="DIR", help="the study folder [from the config]")
    parser.add_argument("--out", dest="run", type=Path, help=argparse.SUPPRESS)  # the old name of --run
    args = parser.parse_args(argv)
    from benchmark.runs import command, read_yaml

    return command(lambda: study(read_yaml(args.config), args.data, args.run), print)


if __name__ == "__main__":
    main()
