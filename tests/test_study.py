"""benchmark.study with several pretraining seeds: pairing, per-variant truth diagnostics and curves."""

import pandas as pd
import pytest
import yaml

from benchmark.study import study
from noldo.errors import NoldoError


@pytest.fixture()
def config(synthetic_store, tmp_path):
    data = synthetic_store(tile_size=40, splits=[("nol", 20, 0), ("truth_train", 8, 1), ("truth_test", 5, 2)])
    return {"data": str(data), "run": str(tmp_path / "study"),
            "store": {"samples": 20, "truth_train": 8, "truth_test": 5, "truth_tile": 40},
            "pretrain": {"config": "benchmark/configs/cromss-demo.yaml", "epochs": 1, "max_steps": 2, "batch_size": 4,
                         "crop": 32, "val_fraction": 0.2, "T": 1, "seeds": [3, 4]},
            "variants": {"CromSS": {}, "SM-selection": {"single_modality": "s2", "consistency": False}},
            "finetune": {"task": "truth", "modalities": ["s2"], "modes": ["frozen"], "seeds": [0, 1],
                         "encoder": "resnet18", "epochs": 1, "batch_size": 4, "crop": 32, "workers": 0}}


def test_each_finetuning_seed_takes_its_own_pretraining_seed(config, tmp_path):
    text = study(config)
    run = tmp_path / "study"
    for name in ("CromSS", "SM-selection"):
        for i, seed in enumerate((3, 4)):
            folder = run / "pretrain" / name / f"seed{seed}"
            assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == seed
            used = yaml.safe_load((run / "finetune" / f"{name}-s2-frozen-seed{i}" / "config.yaml").read_text())
            assert used["weights"] == str(folder / "checkpoints" / "last.ckpt")
    assert len(pd.read_csv(run / "results.csv")) == 6 and (run / "curves.png").stat().st_size > 0
    # both variants select (the single-modal one by its own confidence), over two seeds each
    rows = [line for line in text.splitlines() if line.startswith(("| CromSS |", "| SM-selection |"))]
    assert len(rows) == 2 and all(row.rstrip(" |").endswith("| 2") and "no selection" not in row for row in rows)
    assert "Pretraining curves:" in text


def test_pretraining_and_finetuning_seeds_must_pair_up(config):
    config["finetune"]["seeds"] = [0]
    with pytest.raises(NoldoError, match="pair up one to one"):
        study(config)
