"""riskflow.core.partitioning places keys exactly where aiokafka's (and Java's) default partitioner does."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from riskflow.core.partitioning import murmur2, partition_for


@given(st.binary(max_size=80), st.integers(min_value=1, max_value=64))
def test_matches_aiokafka_default_partitioner(key: bytes, n: int) -> None:
    parts = list(range(n))
    assert partition_for(key, n) == DefaultPartitioner()(key, parts, parts)


def test_hash_matches_aiokafka_and_java_vectors() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        key = f"PF-3301{rng.randrange(100):02d}-{rng.randrange(10**5):05d}".encode()
        assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF
    # Java client test vectors (org.apache.kafka.common.utils.UtilsTest.testMurmur2)
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107
