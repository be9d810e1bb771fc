"""Transfer evaluation: the schedule, frozen encoders, run folders, the results table, the demo study."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from benchmark.finetune import DEFAULTS, finetune, main, parse, settings
from benchmark.finetune_module import FinetuneModule, cosine_factor
from benchmark.report import paper_table, results_table
from benchmark.runs import config_from_args
from benchmark.tasks import TASKS
from noldo.build import BuildSpec, build
from noldo.errors import NoldoError


def test_cosine_schedule():
    assert cosine_factor(0, 5e-4, 1e-5, 40) == pytest.approx(1.0)
    assert cosine_factor(20, 5e-4, 1e-5, 40) == pytest.approx((1e-5 + 0.5 * (5e-4 - 1e-5)) / 5e-4)
    assert cosine_factor(40, 5e-4, 1e-5, 40) == cosine_factor(49, 5e-4, 1e-5, 40) == pytest.approx(0.02)


@pytest.mark.parametrize("bn_update", [False, True])
def test_frozen_means_frozen(bn_update):
    module = FinetuneModule("unet", 13, 9, "resnet18", 5, None, "s2", "frozen", bn_update, 1e-2, 1e-5, 40, 0)
    before = {k: v.clone() for k, v in module.model.encoder.state_dict().items()}
    module.train()
    optimiser = module.configure_optimizers()["optimizer"]
    for _ in range(2):
        loss = module.training_step({"image": torch.randn(2, 13, 64, 64), "label": torch.randint(0, 9, (2, 64, 64))},
                                    0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = module.model.encoder.state_dict()
    weights = [k for k in before if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(before[k], after[k]) for k in weights), "encoder weights never move"
    stats_moved = not torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])
    assert stats_moved == bn_update


def test_odd_tile_sizes_are_padded_and_cropped_back():
    module = FinetuneModule("fpn", 2, 9, "resnet18", 5, None, "s1", "finetune", False, 1e-3, 1e-5, 40, 0)
    assert module(torch.randn(1, 2, 40, 51)).shape == (1, 9, 40, 51)


@pytest.fixture(scope="module")
def truth_store(synthetic_store):
    return synthetic_store(tile_size=40, splits=[("truth_train", 8, 1), ("truth_test", 5, 2)])


def test_finetune_run_folder_and_results(truth_store, tmp_path):
    config = {"task": "truth", "encoder": "resnet18", "epochs": 1, "batch_size": 4, "crop": 32, "workers": 0,
              "mode": "frozen", "results": str(tmp_path / "results.csv")}
    row = finetune(truth_store, config, tmp_path / "run", quiet=True)
    for name in ("confusion.npy", "confusion.csv", "per_class.csv", "metrics.json", "predictions.png",
                 "config.yaml", "metrics.csv"):
        assert (tmp_path / "run" / name).exists(), name
    matrix = np.load(tmp_path / "run" / "confusion.npy")
    import zarr

    truth = zarr.open_group(truth_store / "truth_test.zarr", mode="r")["truth"][:]
    assert matrix.sum() == (truth != 255).sum(), "every labelled test pixel is evaluated, none dropped"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["oa"] == pytest.approx(np.trace(matrix) / matrix.sum())
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == 1 and table["weights"][0] == "random" and 0 <= row["miou"] <= 1


def test_training_crop_is_the_task_s_unless_given(tmp_path):
    assert {name: settings({"task": name})["crop"] for name in TASKS} == {"dw": 496, "osm": 480, "dfc2020": None,
                                                                          "truth": None}
    whole = tmp_path / "whole.yaml"
    whole.write_text("crop: null\n")

    def crop(*argv):
        args = parse(["--data", "d", "--task", "dw", *argv])
        return settings(config_from_args(DEFAULTS, args, "data", "run"))["crop"]

    assert crop() == 496 and crop("--crop", "256") == 256 and crop("--crop", "0") is None
    assert crop("--config", str(whole)) is None and crop("--config", str(whole), "--crop", "128") == 128
    with pytest.raises(NoldoError, match="crop is a size in pixels"):
        settings({"crop": -1})


def test_cli_whole_tiles_and_a_results_file(truth_store, tmp_path):
    main(["--data", str(truth_store), "--task", "truth", "--encoder", "resnet18", "--epochs", "1", "--batch-size", "4",
          "--workers", "0", "--mode", "frozen", "--run", str(tmp_path / "run"), "--results", str(tmp_path / "r.csv")])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["results"] == str(tmp_path / "r.csv") and saved["crop"] is None  # truth: whole 40-px tiles
    assert len(pd.read_csv(tmp_path / "r.csv")) == 1


def test_a_crop_larger_than_the_tiles_is_a_one_line_error(truth_store, tmp_path, capsys):
    args = ["--data", str(truth_store), "--task", "truth", "--encoder", "resnet18", "--epochs", "1", "--batch-size",
            "4", "--workers", "1", "--crop", "64", "--run", str(tmp_path / "run")]
    with pytest.raises(SystemExit):
        main(args)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: crop 64 is larger than the 40×40 tiles of truth_train; give a smaller --crop, or --crop 0 for "
        "whole tiles")


def test_results_table_and_paper_numbers():
    rows = [{"task": "dw", "modality": "s2", "weights": w, "mode": m, "seed": s, "oa": 0.5 + d, "aa": 0.4, "miou": 0.3,
             "mf1": 0.2} for w, d in (("CromSS-midF", 0.1), ("random", 0.0)) for m in ("frozen", "finetune")
            for s in (0, 1)]
    rows[0]["oa"] = 0.7  # CromSS-midF frozen seeds: 0.7 and 0.6
    table = results_table(pd.DataFrame(rows), "dw")
    lines = table.splitlines()
    assert lines[0].startswith("| Input | Weights | seeds | Frozen OA | Frozen AA | Frozen mIoU | Frozen mF1 | FT OA")
    assert "| S2 | random | 2 | 50.00±0.00" in lines[2], "random init comes first"
    assert "| S2 | CromSS-midF | 2 | 65.00±5.00 | 40.00±0.00" in lines[3]
    paper = paper_table("dw")
    assert "Reported by the paper" in paper and "| S2 | R50 | CromSS-lateF (9B) | 78.98±0.21*" in paper
    with pytest.raises(ValueError, match="no results for task osm"):
        results_table(pd.DataFrame(rows), "osm")


def test_demo_study_end_to_end(truth_store, tmp_path):
    import shutil

    import yaml

    from benchmark.study import main

    data = tmp_path / "store"
    shutil.copytree(truth_store, data)
    build(BuildSpec("demo", "synthetic", "nol", 20, 0, 40), data)
    config = {"data": str(data), "out": str(tmp_path / "study"),
              "store": {"samples": 20, "truth_train": 8, "truth_test": 5, "truth_tile": 40},
              "pretrain": {"config": "benchmark/configs/cromss-demo.yaml", "epochs": 1, "batch_size": 4,
                           "crop": 32, "val_fraction": 0.2, "T": 1},
              "variants": {"CromSS-midF": {"fusion": "mid"}, "SM-noisy-labels": {"single_modality": "s2"}},
              "finetune": {"task": "truth", "modalities": ["s2"], "modes": ["frozen", "finetune"], "seeds": [0],
                           "encoder": "resnet18", "epochs": 1, "batch_size": 4, "crop": 32, "workers": 0}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    text = main(["--config", str(path)])
    for weights in ("random", "CromSS-midF", "SM-noisy-labels"):
        assert f"| S2 | {weights} | 1 |" in text
    assert "Label noise of the demo" in text and "| CromSS-midF | 0." in text
    assert len(pd.read_csv(tmp_path / "study" / "results.csv")) == 6
    again = main(["--config", str(path)])  # finished runs are skipped
    assert len(pd.read_csv(tmp_path / "study" / "results.csv")) == 6 and "Study time" in again


def test_store_statistics_of_the_training_split_encode_every_split(truth_store, tmp_path):
    """--stats store in transfer: the training split's statistics (noldo stats) for train, val and test alike."""
    import shutil

    from benchmark.datamodules import DownstreamDataModule
    from noldo.stats import stats

    root = tmp_path / "store"
    shutil.copytree(truth_store, root)
    module = DownstreamDataModule(root, "truth", "s2", "truth_train", "truth_test", stats="store")
    with pytest.raises(NoldoError, match="noldo stats .* --split truth_train"):
        module.setup()
    kept = stats(root, "truth_train", workers=1)
    module.setup()
    for dataset in (module.train_set, module.val_set, module.test_set):
        assert dataset.stats.source == "store:truth_train"
        assert dataset.stats.s2[0] == (kept["s2"]["B1"]["mean"], kept["s2"]["B1"]["std"])


def test_the_module_refuses_data_encoded_otherwise_than_its_weights_expect(tmp_path):
    """A LightningCLI config can pair TorchGeo weights with CromSS-encoded data: setup stops it."""
    from types import SimpleNamespace

    from tests.helpers import torchgeo_file

    torchgeo_file(tmp_path / "moco.pth")
    module = FinetuneModule(weights=f"torchgeo:SENTINEL2_ALL_MOCO={tmp_path / 'moco.pth'}", encoder="resnet50")
    module.trainer = SimpleNamespace(datamodule=SimpleNamespace(normalization="cromss"))
    with pytest.raises(NoldoError, match="ssl4eo-moco"):
        module.setup("fit")
    module.trainer.datamodule.normalization = "ssl4eo-moco"
    module.setup("fit")
    with pytest.raises(NoldoError, match="give --encoder resnet50"):
        FinetuneModule(weights=f"torchgeo:SENTINEL2_ALL_MOCO={tmp_path / 'moco.pth'}", encoder="resnet18")
