"""loader: device: raw crops finished on the device give the batches of the per-item path."""

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from benchmark.batch_ring import SLOTS, BatchRing
from benchmark.cromss.module import CromSSModule
from benchmark.data import NoLPretrainDataset, collate, encode, loader
from benchmark.device_batch import device_batch, encode_s1, encode_s2
from noldo.catalog import band_subset
from noldo.errors import NoldoError


@pytest.fixture(scope="module")
def demo_store(synthetic_store):
    return synthetic_store(samples=64, tile_size=48)  # the store of test_benchmark_data


def assert_same_batches(device: dict, item: dict) -> None:
    """Equal tensors; the prior to 1e-6: the item path's is scipy's filter, the device's torch's convolutions,
    which sum the same terms in another order."""
    assert device.keys() == item.keys() and device["meta"] == item["meta"]
    for key in item.keys() - {"meta", "prior"}:
        assert device[key].dtype == item[key].dtype and torch.equal(device[key], item[key]), key
    if "prior" in item:
        torch.testing.assert_close(device["prior"], item["prior"], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("crop", "rotation"), [(20, "90"), (None, "90"), (20, "none")])
def test_device_batches_are_the_item_batches(demo_store, crop, rotation):
    """Same seed and (index, epoch) keys, crops at the tile border and inside: the batch of loader: device is that
    of loader: item with the CPU prior, and its prior is exactly that of prior: batch."""
    keys = [(i, epoch) for i in (0, 5, 9, 40) for epoch in range(4)]
    options = {"crop": crop, "rotation": rotation, "seed": 3}
    raw = collate([NoLPretrainDataset(demo_store, prior="batch", loader="device", **options)[k] for k in keys])
    assert raw["s2"].dtype == torch.uint16 and raw["s1"].dtype == torch.float32 and raw["labels"].dtype == torch.uint8
    batch = device_batch(raw)
    assert_same_batches(batch, collate([NoLPretrainDataset(demo_store, **options)[k] for k in keys]))
    on_step = collate([NoLPretrainDataset(demo_store, prior="batch", **options)[k] for k in keys])
    assert torch.equal(batch["prior"], CromSSModule._prior(on_step))


def test_validation_bands_zscore_and_cloud_masking(demo_store):
    options = {"crop": 24, "augment": False, "season": 0, "bands": "9B", "normalization": "zscore", "min_clear": 60}
    raw = [NoLPretrainDataset(demo_store, prior="none", loader="device", **options)[i] for i in range(6)]
    expected = collate([NoLPretrainDataset(demo_store, prior="none", **options)[i] for i in range(6)])
    assert_same_batches(device_batch(collate(raw)), expected)
    assert (expected["label"] == 255).any(), "cloud-masked labels are in the comparison"


def test_encoding_of_every_stored_value():
    """Every uint16 DN of every band, and S1 dB with nodata and infinities, encode as benchmark.data.encode does."""
    values = np.arange(2**16, dtype="uint16").reshape(256, 256)
    for bands in (tuple(range(13)), band_subset("9B")):
        s2 = np.broadcast_to(values, (len(bands), 256, 256))
        for normalization in ("cromss", "zscore"):
            got = encode_s2(torch.from_numpy(s2.copy())[None], bands, normalization)[0].numpy()
            np.testing.assert_array_equal(got, encode(s2, "s2", bands, normalization))
    s1 = np.random.default_rng(0).normal(-16, 9, (3, 2, 40, 40)).astype("float32")
    s1[0, 0, :4] = np.nan
    s1[1, 1, 0, :2] = np.inf, -np.inf
    for normalization in ("cromss", "zscore"):
        np.testing.assert_array_equal(encode_s1(torch.from_numpy(s1), normalization).numpy(),
                                      np.stack([encode(x, "s1", (0, 1), normalization) for x in s1]))


def test_the_module_finishes_raw_batches_from_a_worker(demo_store):
    """Raw batches cross a worker's shared memory intact; CromSSModule finishes them after the transfer."""
    dataset = NoLPretrainDataset(demo_store, crop=32, seed=1, prior="batch", loader="device")
    from_worker = next(iter(loader(dataset, batch_size=4, shuffle=True, workers=1, seed=1)))
    in_process = next(iter(loader(dataset, batch_size=4, shuffle=True, seed=1)))
    module = CromSSModule(encoder="resnet18")
    finished = module.on_after_batch_transfer(from_worker, 0)
    assert_same_batches(finished, device_batch(in_process))
    assert module.on_after_batch_transfer(finished, 0) is finished


def test_worker_batches_reuse_their_shared_memory_intact(demo_store):
    """A worker's raw batches come from its ring of reused shared memory, a slot written again only once
    device_batch has finished its batch: an epoch of three times the ring's batches, each finished as it comes,
    equals the in-process epoch and uses no more buffers than the ring has; an epoch held whole without being
    finished is intact too (the worker goes on in fresh memory); a batch finished and then read again after
    its slot was reused is refused."""
    dataset = NoLPretrainDataset(demo_store, crop=16, seed=2, prior="batch", loader="device")
    indices = range(2 * 3 * SLOTS)
    expected = [device_batch(b) for b in loader(dataset, batch_size=2, shuffle=True, seed=2, indices=indices)]
    from_worker = loader(dataset, batch_size=2, shuffle=True, workers=1, seed=2, indices=indices)
    raw = []
    for batch in from_worker:
        raw.append(batch)
        assert_same_batches(device_batch(batch), expected[len(raw) - 1])
    assert len(raw) == 3 * SLOTS and all("ring" in b for b in raw)
    assert len({b["s2"].untyped_storage().data_ptr() for b in raw}) <= SLOTS
    with pytest.raises(NoldoError, match="read again after it was finished"):
        device_batch(raw[0])
    held = list(from_worker)  # the next epoch (same order: the sampler's epoch was not advanced), none finished
    assert sum("ring" in b for b in held) <= SLOTS < len(held)
    for got, want in zip(held, expected, strict=True):
        assert_same_batches(device_batch(got), want)


def test_a_failed_collate_leaves_the_ring_whole():
    """Items that cannot be stacked raise as PyTorch's collate would, and leave their slot free and nothing
    marked as sent to the main process (which would then be asked for a buffer it never got)."""
    ring = BatchRing(slots=2)
    good = [{"s2": torch.zeros(3, 4, 4, dtype=torch.uint16)} for _ in range(2)]
    bad = [good[0], {"s2": torch.zeros(3, 4, 5, dtype=torch.uint16)}]
    with pytest.raises(RuntimeError, match="stack expects"):
        ring.collate(bad, ["s2"])
    assert not ring.shipped and torch.equal(ring.generations[0], ring.generations[1])
    assert ring.collate(good, ["s2"]) and ring.collate(good, ["s2"])  # both slots still there
    assert ring.collate(good, ["s2"]) is None  # neither released: the caller collates as PyTorch does


@pytest.mark.parametrize("options", [{"prior": "cpu"}, {"prior": "batch", "rotation": "free"}, {"loader": "gpu"}])
def test_device_loader_refuses_what_it_cannot_do(demo_store, options):
    with pytest.raises(NoldoError, match="loader"):
        NoLPretrainDataset(demo_store, **{"loader": "device", **options})


def test_store_statistics_encode_alike_on_both_paths(synthetic_store):
    """--stats store: the split's own mean/std (from noldo stats) on the item and the device path; without them,
    a clear error naming the command."""
    from noldo.stats import stats

    root = synthetic_store(samples=20, tile_size=32, copy=True)
    with pytest.raises(NoldoError, match="noldo stats"):
        NoLPretrainDataset(root, stats="store")
    kept = stats(root, "nol", workers=1)
    options = {"crop": 16, "augment": False, "season": 1, "prior": "none", "stats": "store"}
    dataset = NoLPretrainDataset(root, **options)
    assert dataset.stats.s2[3] == (kept["s2"]["B4"]["mean"], kept["s2"]["B4"]["std"])
    item, paper = dataset[2], NoLPretrainDataset(root, **{**options, "stats": "ssl4eo"})[2]
    assert not torch.equal(item["s2"], paper["s2"]), "the store's statistics change the encoding"
    raw = [NoLPretrainDataset(root, loader="device", **options)[i] for i in range(4)]
    moved = move_data_to_device(collate(raw), torch.device("cpu"))  # as Lightning moves a batch: stats survive
    assert_same_batches(device_batch(moved), collate([dataset[i] for i in range(4)]))


@pytest.mark.parametrize("normalization", ["zscore", "ssl4eo-moco"])
def test_every_normalization_is_the_same_on_the_device(demo_store, normalization):
    options = {"crop": 16, "augment": False, "season": 2, "prior": "none", "normalization": normalization}
    raw = [NoLPretrainDataset(demo_store, loader="device", **options)[i] for i in range(3)]
    assert_same_batches(device_batch(collate(raw)), collate([NoLPretrainDataset(demo_store, **options)[i]
                                                             for i in range(3)]))
    with pytest.raises(NoldoError, match="normalization must be one of"):
        encode_s1(raw[0]["s1"][None], "minmax")
