"""Print the records of a Kafka topic as JSON lines, from the beginning, then exit.

Usage: .venv/bin/python scripts/read_topic.py [TOPIC] [--idle SECONDS]
(`make read-topic TOPIC=produtos-persistidos`). Reads without a consumer group, so it
changes no committed offset; it exits once no record arrived for --idle seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from dotenv import load_dotenv

from services.common.config import Env, KafkaConfig
from services.common.kafka import client_settings


async def read(topic: str, idle: float) -> int:
    # Without a group_id the consumer takes every partition itself and commits nothing.
    consumer = AIOKafkaConsumer(
        topic,
        **client_settings(KafkaConfig.from_env(Env(os.environ))),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",  # a re-drive aborted by its fencing never happened
    )
    await consumer.start()
    try:
        count = 0
        while batches := await consumer.getmany(timeout_ms=int(idle * 1000)):
            for record in (r for batch in batches.values() for r in batch):
                print(json.dumps(as_line(record), ensure_ascii=False))
                count += 1
        return count
    finally:
        await consumer.stop()


def as_line(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    value = record.value.decode("utf-8", "replace") if record.value else None
    try:
        parsed = json.loads(value) if value else None
    except ValueError:
        parsed = value
    return {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key.decode("utf-8", "replace") if record.key else None,
        "headers": {k: v.decode("utf-8", "replace") for k, v in record.headers},
        "value": parsed,
    }


def main() -> None:
    load_dotenv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("KAFKA_TOPIC_PRODUTOS_PERSISTIDOS", "produtos-persistidos")
    parser.add_argument("topic", nargs="?", default=default)
    parser.add_argument("--idle", type=float, default=2.0, help="stop after this quiet time")
    args = parser.parse_args()
    count = asyncio.run(read(args.topic, args.idle))
    print(f"{count} records on {args.topic}", file=sys.stderr)


if __name__ == "__main__":
    main()
