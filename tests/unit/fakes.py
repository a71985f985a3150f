"""Stand-ins for what the code under test reads from aiokafka."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# 2024-06-12T12:00:00Z, the instant of the example in DESIGN.md.
EXAMPLE_TIMESTAMP_MS = 1718193600000


@dataclass(frozen=True)
class FakeRecord:
    """A consumed Kafka record: what ``services.scheduler.records.KafkaRecord`` reads."""

    value: bytes | None
    topic: str = "cadastro-produtos"
    partition: int = 2
    offset: int = 41
    timestamp: int = EXAMPLE_TIMESTAMP_MS
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes | None]] = ()
