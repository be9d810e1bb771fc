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
import yaml


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


def pretrain_all(data: Path, out: Path, base: dict[str, Any], variants: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Pretrain each variant (skipping finished ones); returns the final checkpoint of each."""
    from benchmark.cromss.__main__ import DEFAULTS, train
    from benchmark.runs import resolve_config

    checkpoints = {}
    for name, overrides in variants.items():
        folder = out / "pretrain" / name
        checkpoint = folder / "checkpoints" / "last.ckpt"
        settings = {k: v for k, v in base.items() if k != "config"}
        config = resolve_config(DEFAULTS, base.get("config"), {**settings, **overrides})
        if not (folder / "done").exists():
            train(data, config, folder, quiet=True)
            (folder / "done").write_text("finished\n")
        checkpoints[name] = checkpoint
    return checkpoints


def finetune_all(data: Path, out: Path, settings: dict[str, Any], checkpoints: dict[str, Path],
                 single_modal: dict[str, str | None]) -> Path:
    """Every (weights, modality, mode, seed) fine-tuning run not yet in the results CSV."""
    from benchmark.finetune import finetune

    results = out / "results.csv"
    done = set()
    if results.exists():
        table = pd.read_csv(results)
        done = set(zip(table["weights"], table["modality"], table["mode"], table["seed"], strict=True))
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
                    run = out / "finetune" / f"{name}-{modality}-{mode}-seed{seed}"
                    finetune(data, {**fixed, "modality": modality, "weights": path, "weights_label": name,
                                    "mode": mode, "seed": seed, "results": str(results)}, run, quiet=True)
    return results


def diagnostics(data: Path, out: Path, variants: dict[str, dict[str, Any]]) -> str:
    """The simulated label-noise rate and, per pretraining run, the selection precision at its last epoch."""
    index = pd.read_parquet(data / "nol.parquet")
    noise = index[[c for c in index.columns if c.startswith("noise_t")]].to_numpy().mean()
    lines = [f"Label noise of the demo `nol` split: {noise:.1%} of the labelled pixels disagree with the truth.", ""]
    lines += ["| pretraining | correct noisy labels, all pixels | correct, selected (weight 1) pixels |",
              "|---|---|---|"]
    for name in variants:
        metrics = out / "pretrain" / name / "metrics.csv"
        table = pd.read_csv(metrics) if metrics.exists() else pd.DataFrame()
        if "label_precision_selected" not in table:
            lines.append(f"| {name} | — | — (no selection) |")
            continue
        last = table.dropna(subset=["label_precision_selected"]).iloc[-1]
        lines.append(f"| {name} | {last.label_precision_base:.3f} | {last.label_precision_selected:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmark.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="e.g. benchmark/configs/study-demo.yaml")
    parser.add_argument("--data", type=Path, help="the store [from the config]")
    parser.add_argument("--out", type=Path, help="the study folder [from the config]")
    args = parser.parse_args(argv)
    from benchmark.report import results_table
    from benchmark.runs import fail

    try:
        config = yaml.safe_load(args.config.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read {args.config}: {exc}")
    started = time.monotonic()
    data, out = Path(args.data or config["data"]), Path(args.out or config["out"])
    out.mkdir(parents=True, exist_ok=True)
    ensure_stores(data, config["store"])
    variants = config["variants"]
    checkpoints = pretrain_all(data, out, config["pretrain"], variants)
    single = {name: v.get("single_modality") for name, v in variants.items()}
    results = finetune_all(data, out, config["finetune"], checkpoints, single)
    minutes = (time.monotonic() - started) / 60
    text = "\n\n".join([f"Demo study on the `truth` labels of {data} ({config['finetune']['task']} task), "
                        f"{len(config['finetune']['seeds'])} seeds, in % (mean ± std):",
                        results_table(pd.read_csv(results), config["finetune"]["task"]),
                        diagnostics(data, out, variants), f"Study time: {minutes:.1f} minutes."])
    (out / "table.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
