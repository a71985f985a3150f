"""What the status page shows: the flow through the scheduler over the last five minutes,
and the API's numbers gathered here, so that the page never calls another origin."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import aiohttp
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from ..common.metrics import SchedulerMetrics
from .consumer import ProductConsumer

log = logging.getLogger(__name__)

HISTORY_SECONDS = 300
# The consumer lag gauges are asked of the broker this often (in samples of a second).
LAG_EVERY = 5

# The API's series the page shows, by the name the page knows them by.
API_SERIES = {
    "outbox_backlog": ("fluxo_api_outbox_backlog", None),
    "outbox_oldest_age_seconds": ("fluxo_api_outbox_oldest_age_seconds", None),
    "published": ("fluxo_api_outbox_published_total", None),
    "relay_active": ("fluxo_api_outbox_relay_active", None),
    "created": ("fluxo_api_persisted_records_total", ("outcome", "created")),
    "updated": ("fluxo_api_persisted_records_total", ("outcome", "updated")),
    "unchanged": ("fluxo_api_persisted_records_total", ("outcome", "unchanged")),
    "rejected": ("fluxo_api_persisted_records_total", ("outcome", "rejected")),
}


class Flow:
    def __init__(
        self,
        consumer: ProductConsumer,
        metrics: SchedulerMetrics,
        session: aiohttp.ClientSession,
        api_url: str,
    ) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._session = session
        self._api_metrics_url = api_url + "/metrics"
        self._api_ready_url = api_url + "/ready"
        # (unix time, records fetched, persisted, dead-lettered), one a second.
        self.history: deque[tuple[float, int, int, int]] = deque(maxlen=HISTORY_SECONDS + 1)

    async def run(self) -> None:
        tick = 0
        while True:
            self.sample()
            if tick % LAG_EVERY == 0:
                try:
                    await self._consumer.partitions()
                except (KafkaError, OSError) as exc:
                    log.debug("reading the consumer lag failed: %s", exc)
            tick += 1
            await asyncio.sleep(1)

    def sample(self) -> None:
        counters = self._consumer.counters()
        self.history.append(
            (
                round(time.time(), 3),
                counters["records"],
                counters["persisted"],
                counters["dead_lettered"],
            )
        )

    async def api_numbers(self) -> dict[str, Any]:
        """The API's outbox and persisted counts, read from its ``/metrics``, and the
        PostgreSQL primary it writes to, from its ``/ready``."""
        text, primary = await asyncio.gather(self._api_metrics(), self._api_primary())
        if text is None:
            return {"reachable": False}
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        numbers: dict[str, Any] = {"reachable": True, "database_primary": primary}
        for key, (name, label) in API_SERIES.items():
            value = samples.get((name, (label,) if label else ()))
            numbers[key] = value
        return numbers

    async def _api_metrics(self) -> str | None:
        try:
            async with self._session.get(self._api_metrics_url) as response:
                return await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _api_primary(self) -> str | None:
        """``database_primary`` of the API's ``/ready`` (None while it has none, or is down)."""
        try:
            async with self._session.get(self._api_ready_url) as response:
                body = await response.json()  # 503 (not ready) still names what it knows
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        primary = body.get("database_primary") if isinstance(body, dict) else None
        return primary if isinstance(primary, str) else None

    async def snapshot(self) -> dict[str, Any]:
        return {
            "time": time.time(),
            "history": list(self.history),
            "dead_letters": list(self._consumer.recent_dead_letters),
            "api": await self.api_numbers(),
        }
