"""Kafka's default key partitioner (murmur2), so offline runs place keys where Kafka does.

Identical to the Java client's ``Utils.murmur2`` / ``toPositive(h) % n`` and to
aiokafka's ``DefaultPartitioner`` (what RiskFlow's producers and Faust use for
keyed messages). The backtest uses it to give every event the partition a live
worker would see it on.

>>> partition_for(b"PF-330100-00001", 4) == partition_for(b"PF-330100-00001", 4)
True
>>> murmur2(b"21")  # the Java client's test vector
-973932308
"""

from __future__ import annotations

import struct

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The Java client's 32-bit murmur2 of ``data``, as a signed int."""
    n = len(data)
    h = (0x9747B28C ^ n) & _MASK
    n4 = n // 4
    for (k,) in struct.iter_unpack("<I", data[: n4 * 4]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[n4 * 4 :]
    rest = len(tail)
    if rest >= 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner assigns to ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
