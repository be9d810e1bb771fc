"""noldo.shard_codec writes a whole shard with the very bytes zarr writes, and declines what it does not cover."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from noldo.catalog import IMAGE_ARRAYS, SHARD_SAMPLES, array_kind
from noldo.shard_codec import encode_shard, morton_order
from noldo.store import Layout, _create_arrays


def _values(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    kind = array_kind(name)
    if kind.dtype == "float32":
        values = rng.normal(-15, 4, shape).astype("float32")
        values[rng.random(shape) < 0.1] = np.nan  # nodata must survive bit for bit
        return values
    high = 10_000 if kind.dtype == "uint16" else 256
    return rng.integers(0, high, shape).astype(kind.dtype)


@pytest.mark.parametrize("name", IMAGE_ARRAYS)
def test_a_whole_shard_is_encoded_as_zarr_encodes_it(tmp_path, name):
    rng = np.random.default_rng(7)
    layout = Layout(SHARD_SAMPLES, 4, 12, 10, IMAGE_ARRAYS)
    group = zarr.open_group(tmp_path / "ours.zarr", mode="w")
    _create_arrays(group, layout, (name,))
    array = group[name].with_config({"write_empty_chunks": True})
    data = _values(name, layout.shape(name), rng)
    data[3] = array_kind(name).nodata or 0  # a sample of nodata only is still written
    array[:] = data
    key = array.metadata.encode_chunk_key((0,) * array.ndim)
    stored = (tmp_path / "ours.zarr" / name / key).read_bytes()

    encoded = encode_shard(array, data)

    assert encoded == stored
    (tmp_path / "ours.zarr" / name / key).write_bytes(encoded)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours.zarr" / name)[:], data)


def test_a_big_endian_input_gives_the_same_bytes(tmp_path):
    layout = Layout(SHARD_SAMPLES, 4, 8, 8, ("s1",))
    group = zarr.open_group(tmp_path / "s.zarr", mode="w")
    _create_arrays(group, layout, ("s1",))
    data = _values("s1", layout.shape("s1"), np.random.default_rng(1))
    assert encode_shard(group["s1"], data.astype(">f4")) == encode_shard(group["s1"], data)


def test_a_short_shard_or_another_codec_chain_is_left_to_zarr(tmp_path):
    layout = Layout(SHARD_SAMPLES, 4, 8, 8, ("dw",))
    group = zarr.open_group(tmp_path / "s.zarr", mode="w")
    _create_arrays(group, layout, ("dw",))
    short = np.zeros((SHARD_SAMPLES - 1, 4, 8, 8), "uint8")
    assert encode_shard(group["dw"], short) is None
    whole = (SHARD_SAMPLES, 4, 8, 8)
    lz4 = group.create_array("lz4", shape=whole, dtype="uint8", chunks=(1, 1, 8, 8), shards=whole,
                             compressors=[BloscCodec(cname="lz4")])
    assert encode_shard(lz4, np.zeros(whole, "uint8")) is not None  # another blosc setting is covered
    plain = group.create_array("plain", shape=whole, dtype="uint8", chunks=(1, 1, 8, 8), shards=whole,
                               compressors=None)
    unsharded = group.create_array("unsharded", shape=whole, dtype="uint8", chunks=whole)
    assert encode_shard(plain, np.zeros(whole, "uint8")) is None
    assert encode_shard(unsharded, np.zeros(whole, "uint8")) is None


@pytest.mark.parametrize("grid", [(64, 4, 1, 1, 1), (64, 4, 1, 1), (5, 3), (3, 1, 6), (1,), (2, 2, 2), (7, 9)])
def test_chunks_go_in_zarrs_morton_order(grid):
    from zarr.core.indexing import morton_order_iter  # zarr's own order, private to zarr: this test is the check

    assert list(morton_order(grid)) == list(morton_order_iter(grid))
