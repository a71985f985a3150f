"""Records sent in batches per partition land where ``send()`` puts them, in order."""

from __future__ import annotations

import asyncio

from services.common.kafka import Outgoing, create_producer, ensure_topics, send_batches

from ..helpers import TopicReader, isolated_kafka


async def test_batched_records_land_on_the_partition_send_chooses_in_order() -> None:
    kafka = isolated_kafka(partitions=6)
    await ensure_topics(kafka, [kafka.topic_persistidos, kafka.topic_dlq])
    keys = [f"produto-{n % 97}".encode() for n in range(1_200)]  # each key many times
    producer = create_producer(kafka, max_batch_size=16 * 1024)  # several batches a partition
    await producer.start()
    try:
        deliveries = await send_batches(
            producer,
            [
                Outgoing(
                    kafka.topic_persistidos,
                    value=str(n).encode(),
                    key=key,
                    headers=[("event-id", str(n).encode())],
                )
                for n, key in enumerate(keys)
            ],
        )
        await asyncio.gather(*deliveries)
        by_send = {
            key: (await (await producer.send(kafka.topic_dlq, key=key, value=b"x"))).partition
            for key in set(keys)
        }
    finally:
        await producer.stop()

    async with TopicReader(kafka.topic_persistidos, partitions=6) as reader:
        records = await reader.read(len(keys))

    assert len(records) == len(keys)
    assert len(set(by_send.values())) > 1
    for record in records:
        assert record.key is not None and record.value is not None
        assert record.partition == by_send[record.key]
        assert dict(record.headers)["event-id"] == record.value
    for partition in range(6):
        numbers = [int(r.value or b"") for r in records if r.partition == partition]
        assert numbers == sorted(numbers)
