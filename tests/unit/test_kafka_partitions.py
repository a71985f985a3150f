"""The relay's batches go to the partition the client's default partitioner would choose."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner, murmur2

from services.common import kafka
from services.common.kafka import partition_for


def test_each_key_goes_to_the_partition_of_the_default_partitioner() -> None:
    rng = random.Random(10)
    keys = [str(n).encode() for n in range(2_000)] + [
        rng.randbytes(rng.randint(1, 64)) for _ in range(2_000)
    ]
    keys += ["produto-çã-€".encode(), b"", b"bench-ab12cd34-49999"]

    for count in (1, 2, 3, 6, 7, 12, 50):
        partitions = list(range(count))
        chosen = [partition_for(key, partitions) for key in keys]
        assert chosen == [DefaultPartitioner()(key, partitions, partitions) for key in keys]
        assert set(chosen) == set(partitions)


def test_the_hash_is_the_clients_murmur2_for_keys_of_every_length() -> None:
    rng = random.Random(20261204)
    keys = [rng.randbytes(length) for length in range(80) for _ in range(20)]
    keys += [b"\xff" * length for length in range(12)]

    assert [kafka.murmur2(key) for key in keys] == [murmur2(key) for key in keys]
