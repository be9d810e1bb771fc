"""Encode a whole shard in one call, byte for byte as zarr writes it.

zarr's sharding codec encodes each inner chunk as its own asyncio task, with a thread hop per chunk
for blosc: about 0.3 ms of Python per chunk, more than the compression of a small tile. A build writes
whole shards only, so :func:`encode_shard` does the same work in a loop (the layout is the Zarr v3
``sharding_indexed`` codec: the inner chunks in Morton order, then their (offset, length) index as
little-endian uint64 with its CRC32C). It covers the codec chain noldo creates (bytes, then blosc; the
index with bytes and crc32c, at the end) and answers None for any other chain, and for a short last
shard, which the caller then writes through zarr. ``tests/test_shard_codec.py`` holds it to zarr's own bytes.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import google_crc32c
import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ShardingCodecIndexLocation

_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


@lru_cache(maxsize=16)
def morton_order(grid: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The chunks of a shard in the order zarr writes them: by compressed Morton code, which takes the
    coordinates' bits level by level, dimension by dimension, a dimension dropping out once its
    ``(size - 1).bit_length()`` bits are used."""
    bits = [(size - 1).bit_length() for size in grid]

    def code(coords: tuple[int, ...]) -> int:
        z, position = 0, 0
        for level in range(max(bits, default=0)):
            for dim, width in enumerate(bits):
                if level < width:
                    z |= ((coords[dim] >> level) & 1) << position
                    position += 1
        return z

    return tuple(sorted(itertools.product(*(range(size) for size in grid)), key=code))


def _little(codec: BytesCodec, itemsize: int) -> bool:
    """Whether a bytes codec stores little-endian values (zarr gives single bytes no byte order)."""
    return codec.endian.value == "little" if codec.endian is not None else itemsize == 1


def _blosc(array: zarr.Array) -> tuple[ShardingCodec, numcodecs.Blosc] | None:
    """The array's sharding codec and its inner blosc compressor, if its chain is the one noldo creates."""
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    inner, index = sharding.codecs, sharding.index_codecs
    if not (len(inner) == 2 and isinstance(inner[0], BytesCodec) and isinstance(inner[1], BloscCodec)
            and len(index) == 2 and isinstance(index[0], BytesCodec) and isinstance(index[1], Crc32cCodec)
            and sharding.index_location == ShardingCodecIndexLocation.end
            and _little(inner[0], array.dtype.itemsize) and _little(index[0], 8)):
        return None
    blosc = inner[1]
    return sharding, numcodecs.Blosc(cname=blosc.cname.value, clevel=blosc.clevel,
                                     shuffle=_SHUFFLE[blosc.shuffle.value], blocksize=blosc.blocksize,
                                     typesize=blosc.typesize or array.dtype.itemsize)


def encode_shard(array: zarr.Array, data: np.ndarray) -> bytes | None:
    """The bytes zarr stores for ``data``, one whole shard of ``array`` with every chunk written
    (``write_empty_chunks``); None if the array's codecs are not the chain this module covers or
    ``data`` is not a whole shard (the last one of a split may be short)."""
    codec = _blosc(array)
    if codec is None or data.shape != tuple(array.metadata.chunk_grid.chunk_shape):
        return None
    sharding, blosc = codec
    values = np.ascontiguousarray(data, dtype=array.dtype.newbyteorder("<"))
    inner = sharding.chunk_shape
    grid = tuple(s // c for s, c in zip(values.shape, inner, strict=True))
    index = np.empty((*grid, 2), dtype="<u8")
    parts, offset = [], 0
    for coords in morton_order(grid):
        encoded = blosc.encode(values[tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, inner, strict=True))])
        parts.append(encoded)
        index[coords] = (offset, len(encoded))
        offset += len(encoded)
    table = index.tobytes()
    return b"".join((*parts, table, google_crc32c.value(table).to_bytes(4, "little")))
