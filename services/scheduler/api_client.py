"""The scheduler's HTTP client of the API's batch endpoint, over one or several API URLs.

Batches go round-robin to the API replicas that answer. One that fails (connection refused,
timeout, 5xx, 429, or a token or URL it refuses) is set aside for a cool-down that doubles
with each consecutive failure, and the batch goes to the next one at once; a replica set
aside is tried again when its cool-down ends, or when every other one failed too. The upsert
is idempotent, so a batch that reached a replica that then timed out may safely go to another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from ..common import jsoncodec
from ..common.metrics import SchedulerMetrics
from ..common.tracing import TRACEPARENT, Trace, start
from .records import Poison, Work, invalid_fields, redrive_of

log = logging.getLogger(__name__)

BATCH_PATH = "/produto/scheduler/batch"
# Statuses that say "try again later": the API, its database or a proxy is overloaded or
# down, or the scheduler is misconfigured (token, URL) and an operator must act. Other 4xx
# answers are about the records sent.
TRANSIENT_STATUSES = {401, 403, 404, 405, 408, 425, 429}
# Cool-down of a failing API replica: the first, and the longest after repeated failures.
COOL_DOWN = 1.0
MAX_COOL_DOWN = 15.0


class TransientError(Exception):
    """The API could not take the batch now; nothing was persisted, retry it."""


@dataclass
class Endpoint:
    """One API replica and how it has answered lately."""

    url: str
    failures: int = 0  # consecutive
    down_until: float = 0.0

    def up(self, now: float) -> bool:
        return self.down_until <= now


class ApiClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_urls: str | Sequence[str],
        token: str,
        metrics: SchedulerMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._metrics = metrics or SchedulerMetrics()
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("at least one API URL is needed")
        self.endpoints = [Endpoint(url.rstrip("/")) for url in urls]
        self._next = 0  # where the round-robin starts next
        self._clock = clock
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }

    async def persist(self, work: Sequence[Work], trace: Trace | None = None) -> list[Poison]:
        """Persist a batch; returns the records the API rejected for good.

        ``trace`` is the batch's (its ``traceparent`` header); each item carries its record's.
        A batch the API refuses as a whole (too large, say) is split in halves until the
        record at fault stands alone, so one bad record never holds back the others.
        """
        trace = trace or start()
        status, body = await self._post(work, trace)
        if status == 200:
            self._count_stale_redrives(work, body["results"])
            return [
                rejected(work[result["index"]], invalid_fields(result["error"]))
                for result in body["results"]
                if result["status"] == "rejected"
            ]
        if len(work) > 1:
            middle = len(work) // 2
            return [
                *await self.persist(work[:middle], trace),
                *await self.persist(work[middle:], trace),
            ]
        reason = f"API answered {status}: {jsoncodec.dumps(body).decode()[:500]}"
        return [rejected(work[0], reason)]

    def _count_stale_redrives(self, work: Sequence[Work], results: list[Any]) -> None:
        """A re-driven dead letter the API left unchanged was older than the product's row
        (ordered by its original coordinates)."""
        stale = sum(
            1
            for result in results
            if result["status"] == "unchanged" and redrive_of(work[result["index"]].record.headers)
        )
        if stale:
            self._metrics.redrives.labels("stale").inc(stale)

    async def _post(self, work: Sequence[Work], trace: Trace) -> tuple[int, Any]:
        """POST the batch to the first replica that answers, in failover order."""
        payload = jsoncodec.dumps({"items": [w.item for w in work]})
        headers = {**self._headers, TRACEPARENT: trace.traceparent}
        failure: TransientError | None = None
        for endpoint in self._failover_order():
            try:
                answer = await self._post_to(endpoint, payload, headers)
            except TransientError as exc:
                self._failed(endpoint, exc)
                failure = exc
                continue
            self._answered(endpoint)
            return answer
        assert failure is not None
        raise failure

    def _failover_order(self) -> list[Endpoint]:
        """Replicas that answer, round-robin; then those set aside, soonest back first."""
        now = self._clock()
        first = self._next % len(self.endpoints)
        self._next += 1
        rotated = self.endpoints[first:] + self.endpoints[:first]
        up = [endpoint for endpoint in rotated if endpoint.up(now)]
        down = sorted((e for e in rotated if not e.up(now)), key=lambda e: e.down_until)
        return up + down

    def _failed(self, endpoint: Endpoint, exc: TransientError) -> None:
        endpoint.failures += 1
        cool_down = min(MAX_COOL_DOWN, COOL_DOWN * 2 ** (endpoint.failures - 1))
        endpoint.down_until = self._clock() + cool_down
        others = len(self.endpoints) - 1
        log.warning(
            "API at %s failed (%s); %s for %.0fs",
            endpoint.url,
            exc,
            f"sending to the {others} other(s)" if others else "retrying",
            cool_down,
        )

    def _answered(self, endpoint: Endpoint) -> None:
        if endpoint.failures:
            log.info("API at %s answers again", endpoint.url)
        endpoint.failures = 0
        endpoint.down_until = 0.0

    async def _post_to(
        self, endpoint: Endpoint, payload: bytes, headers: dict[str, str]
    ) -> tuple[int, Any]:
        url = endpoint.url + BATCH_PATH
        started = time.perf_counter()
        try:
            async with self._session.post(url, data=payload, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"API unreachable: {exc!r}") from exc
        finally:
            self._metrics.batch_duration.observe(time.perf_counter() - started)
        if status >= 500 or status in TRANSIENT_STATUSES:
            if status in (401, 403):
                log.error(
                    "the API at %s refused the token (HTTP %d): check API_TOKEN",
                    endpoint.url,
                    status,
                )
            elif status in (404, 405):
                log.error("no batch endpoint at %s (HTTP %d): check API_URL", url, status)
            raise TransientError(f"API answered {status}")
        try:
            return status, jsoncodec.loads(raw) if raw else None
        except jsoncodec.JSONDecodeError:
            return status, raw.decode("utf-8", "replace")

    async def stored_timestamp(self, product_id: str) -> str | None:
        """The availability timestamp of the product's row (None when there is none), read
        from the first replica that answers; ``TransientError`` when none does."""
        for endpoint in self._failover_order():
            url = f"{endpoint.url}/produtos/{quote(product_id, safe='')}"
            try:
                async with self._session.get(url, headers=self._headers) as resp:
                    if resp.status == 404:
                        return None
                    if resp.status == 200:
                        stored: str = (await resp.json())["availability"]["timestamp"]
                        return stored
            except (aiohttp.ClientError, TimeoutError):
                continue
        raise TransientError("no API replica answered")

    async def reachable(self) -> bool:
        """Whether any replica answers ``/health``."""
        answers = await asyncio.gather(*(self._healthy(e) for e in self.endpoints))
        return any(answers)

    async def _healthy(self, endpoint: Endpoint) -> bool:
        try:
            async with asyncio.timeout(2), self._session.get(endpoint.url + "/health") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


def rejected(work: Work, reason: str) -> Poison:
    return Poison(work.record, "api", reason, work.trace)
