"""TorchGeo conventions of the benchmark datasets, the checks TorchGeo's own dataset tests make of
``benchmark.torchgeo.NoLDOS12``, and the LightningCLI entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch.utils.data import ConcatDataset

from benchmark.data import DownstreamDataset, NoLPretrainDataset
from noldo.errors import NoldoError
from noldo.index import acquisition_times
from noldo.store import Split

torchgeo = pytest.importorskip("torchgeo")
from benchmark.torchgeo import NoLDOS12  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(synthetic_store):
    return synthetic_store(splits=[("nol", 12, 0), ("dw_train", 4, 1)], tile_size=32)


class TestNoLDOS12:
    """What tests/datasets/test_<name>.py checks in TorchGeo: getitem, len, add, plot, not downloaded."""

    def test_getitem(self, store):
        dataset = NoLDOS12(store, "nol")
        item = dataset[0]
        assert isinstance(dataset, torchgeo.datasets.NonGeoDataset)
        assert item["s2"].shape == (13, 32, 32) and item["s2"].dtype == torch.float32
        assert item["s1"].shape == (2, 32, 32) and item["s1"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and item["prior"].shape == (9, 32, 32)
        for key in ("x", "y", "t"):
            assert item[key].shape == (1,) and item[key].dtype == torch.float64, key
        assert item["wavelength"].shape == (15,) and item["wavelength"][1] == pytest.approx(0.4924)

    def test_downstream_split(self, store):
        dataset = NoLDOS12(store, "dw_train", bands="9B")
        item = dataset[1]
        assert item["image"].shape == (9, 32, 32) and item["label"].dtype == torch.int64
        assert dataset.classes == tuple(c for c in NoLDOS12.classes) and len(dataset) == 4

    def test_len(self, store):
        assert len(NoLDOS12(store, "nol")) == 12

    def test_add(self, store):
        dataset = NoLDOS12(store, "nol")
        assert len(dataset + dataset) == 24 and isinstance(dataset + dataset, ConcatDataset)

    def test_plot(self, store):
        dataset = NoLDOS12(store, "nol")
        item = dataset[0]
        figure = dataset.plot(item, suptitle="Test")
        assert isinstance(figure, Figure) and figure._suptitle.get_text() == "Test"
        item["prediction"] = item["label"].clone()
        figure = dataset.plot(item, show_titles=False)
        assert len(figure.axes) == 5 and all(not ax.get_title() for ax in figure.axes)

    def test_not_downloaded(self, tmp_path):
        with pytest.raises(torchgeo.datasets.DatasetNotFoundError, match="Dataset not found") as raised:
            NoLDOS12(tmp_path, "nol")
        assert "noldo download" in str(raised.value) and "noldo build" in str(raised.value)


def test_transforms_are_applied(store):
    def drop_prior(item):
        return {k: v for k, v in item.items() if k != "prior"} | {"transformed": True}

    item = NoLPretrainDataset(store, augment=False, crop=None, transforms=drop_prior)[0]
    assert item["transformed"] and "prior" not in item
    assert DownstreamDataset(store, "dw_train", transforms=drop_prior)[0]["transformed"]


def test_where_and_when_are_the_sample_grid_centre_and_its_scene_time(store):
    dataset = NoLPretrainDataset(store, augment=False, crop=None, season=2)
    grid = Split.open(store, "nol").grids(3, 4)[0]
    item = dataset[3]
    left, bottom, right, top = grid.bounds
    assert item["x"].item() == pytest.approx((left + right) / 2)
    assert item["y"].item() == pytest.approx((bottom + top) / 2)
    expected = acquisition_times(Split.open(store, "nol").index(), 4)[3, 2]
    assert item["t"].item() == expected.astype("int64")


def test_rgb_is_taken_by_band_name_from_the_selected_bands(store):
    for bands, rgb in (("13B", (3, 2, 1)), ("9B", (2, 1, 0)), (["B02", "B03", "B04", "B08"], (2, 1, 0))):
        dataset = NoLPretrainDataset(store, bands=bands, augment=False, crop=None)
        assert dataset.rgb_indices == rgb, bands
        item = dataset[0]
        shown = dataset.plot(item).axes[0].images[0].get_array()
        np.testing.assert_allclose(shown, np.clip(item["s2"][list(rgb)].permute(1, 2, 0).numpy(), 0, 1))
    assert NoLPretrainDataset(store, bands=["B1", "B8A"]).rgb_indices is None, "no RGB panel without B4, B3, B2"


def test_zero_padded_band_names_select_the_same_bands(store):
    padded = NoLPretrainDataset(store, bands=["B01", "B02", "B8A"], augment=False, crop=None, season=1)
    plain = NoLPretrainDataset(store, bands=["B1", "B2", "b8a"], augment=False, crop=None, season=1)
    assert padded.bands == plain.bands == (0, 1, 8)
    assert torch.equal(padded[0]["s2"], plain[0]["s2"])


def test_a_missing_split_names_the_commands(store):
    with pytest.raises(FileNotFoundError, match="noldo build --region REGION --split osm_train"):
        DownstreamDataset(store, "osm_train", task="osm")


@pytest.mark.parametrize("config", ["cromss-demo.yaml", "finetune-demo.yaml"])
def test_lightning_cli_fits_the_demo_configs(store, tmp_path, monkeypatch, config):
    from benchmark.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["benchmark.cli"])
    main(["fit", "-c", str(REPO / "benchmark" / "configs" / "cli" / config), "--trainer.max_epochs", "1",
          "--data.init_args.root", str(store), "--data.init_args.crop", "32", "--data.init_args.batch_size", "2",
          "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
          "--trainer.enable_progress_bar", "false"]
         + (["--data.init_args.test_split", "dw_train"] if config.startswith("finetune") else []))
    saved = list(tmp_path.rglob("config.yaml"))
    assert saved and "class_path" in saved[0].read_text(), "the resolved config is saved with the run"
    assert list(tmp_path.rglob("*.ckpt")), "a checkpoint is written"


def test_a_multi_season_split_gives_pretraining_items_and_refuses_downstream_options(store):
    assert isinstance(NoLDOS12(store, "nol").dataset, NoLPretrainDataset)
    with pytest.raises(NoldoError, match="pretraining split"):
        NoLDOS12(store, "nol", task="dw")
    assert isinstance(NoLDOS12(store, "dw_train", modality="s1").dataset, DownstreamDataset)
