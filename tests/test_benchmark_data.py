"""benchmark.data: encodings, priors (numpy, scipy reference, batched torch), augmentation, datasets."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter

from benchmark.data import (
    DownstreamDataset,
    NoLPretrainDataset,
    augment,
    encode,
    loader,
    plot,
    prior,
    prior_batch,
)
from noldo.grid import sample_grid
from noldo.store import Layout, SplitWriter, georef_arrays


@pytest.fixture(scope="module")
def demo_store(synthetic_store):
    return synthetic_store(samples=64, tile_size=48)


def write_store(root, arrays, split="nol", seasons=4):
    n, size = len(arrays["dw"]), arrays["dw"].shape[-1]
    layout = Layout(n, seasons, size, size, tuple(arrays))
    writer = SplitWriter(root, split, layout, {"source": "test"})
    grids = [sample_grid(11 + i / 10, 48, size) for i in range(n)]
    writer.write_shard(0, {**arrays, **georef_arrays(grids)}, pd.DataFrame({"sample": [f"s{i}" for i in range(n)]}))
    writer.finalize()
    return root


def test_encoding_by_hand():
    s2 = np.zeros((13, 1, 2), "uint16")
    s2[0] = 1000  # B1: μ − 2σ = 1605.58 − 2·786.79 = 32.00, 4σ = 3147.16 → ⌊(1000 − 32)/3147.16·255⌋ = 78
    s2[0, 0, 1] = 0  # nodata
    s2[10] = 500  # B10 above μ + 2σ = 124.4 → 255
    enc = encode(s2, "s2", tuple(range(13)))
    assert enc.dtype == np.float32
    assert enc[0, 0, 0] == np.float32(78 / 255) and enc[0, 0, 1] == 0 and enc[10, 0, 0] == np.float32(1.0)
    s1 = np.array([[[-12.548, np.nan]], [[-40.0, 0.0]]], "float32")
    enc = encode(s1, "s1", (0, 1))
    assert enc[0, 0, 0] == np.float32(127 / 255), "the mean sits at ⌊127.5⌋"
    assert enc[0, 0, 1] == 0 and enc[1, 0, 0] == 0 and enc[1, 0, 1] == np.float32(1.0)
    z = encode(s2[:1], "s2", (0,), "zscore")
    assert z[0, 0, 0] == pytest.approx((1000 - 1605.58) / 786.79)


def test_prior_matches_a_direct_scipy_reference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 9, (4, 40, 40)).astype("uint8")
    labels[1, :5, :5] = 255  # a cloud
    got = prior(labels, season=2)
    freq = np.stack([(labels == c).mean(0) for c in range(9)])
    onehot = np.stack([(labels[2] == c).astype(float) for c in range(9)])
    t = np.stack([gaussian_filter(f, 3, truncate=4, mode="reflect") for f in freq])
    s = np.stack([gaussian_filter(f, 3, truncate=4, mode="reflect") for f in onehot])
    expected = 0.5 * (t / t.sum(0) + s / s.sum(0))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(0), 1, atol=1e-5)


def test_batched_prior_agrees_with_numpy():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 9, (3, 4, 32, 40)).astype("int64")
    labels[0, :, :20, :20] = 255  # entirely unlabelled corner → uniform
    seasons = np.array([0, 3, 1])
    batched = prior_batch(torch.from_numpy(labels), torch.from_numpy(seasons)).numpy()
    for i in range(3):
        np.testing.assert_allclose(batched[i], prior(labels[i].astype("uint8"), seasons[i]), atol=1e-5)
    np.testing.assert_allclose(batched[0, :, 0, 0], 1 / 9, atol=1e-6)


@pytest.mark.parametrize("crop", [20, None])
def test_batched_prior_of_the_loader_equals_the_tile_prior(demo_store, crop):
    """prior: batch (computed in the training step) gives the prior: cpu values of the whole tile, also in
    the outer 12 px of a crop: the loader hands over the labels with the filter margin."""
    from benchmark.cromss.module import CromSSModule
    from benchmark.data import collate

    on_cpu = NoLPretrainDataset(demo_store, crop=crop, seed=3)
    batched = NoLPretrainDataset(demo_store, crop=crop, seed=3, prior="batch")
    keys = [(i, epoch) for i in (0, 5, 9) for epoch in (0, 1, 2)]  # crops at the tile border and inside
    expected = collate([on_cpu[key] for key in keys])
    batch = collate([batched[key] for key in keys])
    assert torch.equal(batch["label"], expected["label"]) and "prior" not in batch
    np.testing.assert_allclose(CromSSModule._prior(batch).numpy(), expected["prior"].numpy(), atol=1e-6)
    validation = NoLPretrainDataset(demo_store, crop=crop, augment=False, season=0, prior="batch")
    item = collate([validation[1]])
    np.testing.assert_allclose(CromSSModule._prior(item)[0].numpy(), prior(validation.group["dw"][1], 0)[
        :, slice(14, 34) if crop else slice(None), slice(14, 34) if crop else slice(None)], atol=1e-6)


@pytest.mark.parametrize("rotation", ["90", "free", "none"])
def test_augmentation_keeps_image_and_label_aligned(rotation):
    rng = np.random.default_rng(3)
    label = np.kron(rng.integers(0, 9, (8, 8)), np.ones((8, 8), int))  # blocks
    for seed in range(20):
        arrays = {"img": label[None].astype("float32"), "ints": label[None].astype("int16"), "label": label}
        out = augment(arrays, np.random.default_rng(seed), 40, rotation)
        assert out["img"].shape == (1, 40, 40) and out["label"].shape == (40, 40)
        assert out["label"].dtype == label.dtype and set(np.unique(out["label"])) <= set(np.unique(label))
        np.testing.assert_array_equal(out["ints"][0], out["label"])  # integer arrays: nearest, never blended
        close = np.mean(np.abs(out["img"][0] - out["label"]) < 0.5)
        assert close == 1 if rotation != "free" else close > 0.8  # bilinear blends only along block borders


def test_pretrain_items(demo_store):
    ds = NoLPretrainDataset(demo_store, crop=32, seed=0)
    item = ds[5]
    assert item["s1"].shape == (2, 32, 32) and item["s2"].shape == (13, 32, 32) and item["prior"].shape == (9, 32, 32)
    assert item["s1"].dtype == item["s2"].dtype == torch.float32 and item["label"].dtype == torch.int64
    assert item["s2"].min() >= 0 and item["s2"].max() <= 1 and (item["s2"] * 255 % 1 == 0).all()
    assert set(item["label"].unique().tolist()) <= set(range(9)) | {255}
    assert torch.allclose(item["prior"].sum(0), torch.ones(32, 32), atol=1e-5)
    assert item["meta"]["sample"] == ds.ids[5] and 0 <= item["meta"]["season"] < 4
    nine = NoLPretrainDataset(demo_store, bands="9B", crop=None, augment=False, season=1, prior="batch")[0]
    assert nine["s2"].shape == (9, 48, 48) and nine["labels"].shape == (4, 72, 72) and "prior" not in nine
    assert plot(item).axes


def test_pretrain_item_is_the_encoded_store_content(tmp_path):
    """Without augmentation an item is exactly the encoded store pixels of its season."""
    rng = np.random.default_rng(0)
    n, size = 3, 16
    arrays = {"s2": rng.integers(1, 6000, (n, 4, 13, size, size)).astype("uint16"),
              "s1": rng.normal(-15, 5, (n, 4, 2, size, size)).astype("float32"),
              "dw": rng.integers(0, 9, (n, 4, size, size)).astype("uint8")}
    root = write_store(tmp_path / "s", arrays)
    item = NoLPretrainDataset(root, crop=None, augment=False, season=2)[1]
    np.testing.assert_array_equal(item["s2"].numpy(), encode(arrays["s2"][1, 2], "s2", tuple(range(13))))
    np.testing.assert_array_equal(item["s1"].numpy(), encode(arrays["s1"][1, 2], "s1", (0, 1)))
    np.testing.assert_array_equal(item["label"].numpy(), arrays["dw"][1, 2])
    np.testing.assert_allclose(item["prior"].numpy(), prior(arrays["dw"][1], 2))


def test_dataset_augments_all_modalities_together(tmp_path):
    """S2 band B2, S1 VV and the label carry the same block pattern; after augmentation they still agree."""
    rng = np.random.default_rng(1)
    n, size = 4, 32
    pattern = np.kron(rng.integers(0, 9, (n, 4, 4, 4)), np.ones((8, 8), int)).astype("uint8")
    s2 = np.full((n, 4, 13, size, size), 1000, "uint16")
    s2[:, :, 1] = 200 + 300 * pattern.astype("uint16")
    s1 = np.full((n, 4, 2, size, size), -15.0, "float32")
    s1[:, :, 0] = -30 + 3 * pattern.astype("float32")
    root = write_store(tmp_path / "p", {"s2": s2, "s1": s1, "dw": pattern})
    ds = NoLPretrainDataset(root, crop=24, seed=2)
    b2_levels = {k: encode(np.array([[[200 + 300 * k]]], "uint16"), "s2", (1,))[0, 0, 0] for k in range(9)}
    for i in range(n):
        item = ds[i]
        label = item["label"].numpy()
        np.testing.assert_array_equal(item["s2"][1].numpy(), np.vectorize(b2_levels.get)(label))
        vv = encode((-30 + 3 * label)[None].astype("float32"), "s1", (0,))[0]
        np.testing.assert_array_equal(item["s1"][0].numpy(), vv)
        assert (item["prior"].argmax(0).numpy() == label).mean() > 0.6


def test_two_worker_loader(demo_store):
    ds = NoLPretrainDataset(demo_store, crop=32, seed=0)
    batches = list(loader(ds, batch_size=8, shuffle=True, workers=2, seed=0))
    assert len(batches) == 8 and batches[0]["s2"].shape == (8, 13, 32, 32)
    assert sorted(m["index"] for b in batches for m in b["meta"]) == list(range(64))


def test_downstream_dataset_tasks(demo_store):
    truth = DownstreamDataset(demo_store, "nol", task="truth", modality="s1")
    item = truth[0]
    assert item["image"].shape == (2, 48, 48) and truth.in_channels == 2 and truth.num_classes == 9
    assert item["label"].max() < 9
    dw = DownstreamDataset(demo_store, "nol", task="dw", modality="s2", bands="9B", crop=32, augment=True, seed=0)
    assert dw[3]["image"].shape == (9, 32, 32)
    with pytest.raises(ValueError, match="no osm array"):
        DownstreamDataset(demo_store, "nol", task="osm")


def test_osm_labels_shift_to_zero_based(tmp_path):
    osm = np.array([[[0, 1], [13, 5]]], "uint8")
    root = write_store(tmp_path / "o", {"s2": np.ones((1, 1, 13, 2, 2), "uint16"),
                                        "dw": np.zeros((1, 1, 2, 2), "uint8"), "osm": osm}, split="osm_test", seasons=1)
    label = DownstreamDataset(root, "osm_test", task="osm")[0]["label"].numpy()
    np.testing.assert_array_equal(label, [[255, 0], [12, 4]])


def test_windowed_prior_equals_the_full_tile_prior():
    from benchmark.data import _windowed_prior

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 9, (4, 60, 50)).astype("uint8")
    for top, left, size in ((0, 0, 20), (30, 25, 24), (40, 26, 20), (5, 17, 30)):
        rows, cols = slice(top, top + size), slice(left, left + size)
        np.testing.assert_array_equal(_windowed_prior(labels, 1, rows, cols), prior(labels, 1)[:, rows, cols])


def test_min_clear_ignores_labels_under_the_cloud_score(demo_store, example_store):
    from noldo.errors import NoldoError

    plain = NoLPretrainDataset(demo_store, crop=None, augment=False, season=1, prior="none")
    masked = NoLPretrainDataset(demo_store, crop=None, augment=False, season=1, prior="none", min_clear=60)
    import zarr

    scores = zarr.open_group(demo_store / "nol.zarr", mode="r")["s2_cloud"]
    seen = 0
    for i in range(len(plain)):
        a, b, cloudy = plain[i]["label"].numpy(), masked[i]["label"].numpy(), scores[i, 1] < 60
        assert (b[cloudy] == 255).all() and (b[~cloudy] == a[~cloudy]).all()
        seen += int((cloudy & (a != 255)).sum())
    assert seen > 0, "some labelled pixels lie under low cloud scores"
    downstream = DownstreamDataset(demo_store, "nol", task="truth", min_clear=60)
    np.testing.assert_array_equal(downstream[0]["label"].numpy()[scores[0, 0] < 60], 255)
    root, _ = example_store  # a store from before cloud scores: readable, but cannot mask by them
    assert len(NoLPretrainDataset(root)) == 70
    with pytest.raises(NoldoError, match="no s2_cloud array"):
        NoLPretrainDataset(root, min_clear=60)
