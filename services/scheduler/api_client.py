"""The scheduler's HTTP client of the API's batch endpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from ..common import jsoncodec
from ..common.metrics import SchedulerMetrics
from ..common.tracing import TRACEPARENT, Trace, start
from .records import Poison, Work, invalid_fields

log = logging.getLogger(__name__)

BATCH_PATH = "/produto/scheduler/batch"
# Statuses that say "try again later": the API, its database or a proxy is overloaded or
# down, or the scheduler is misconfigured (token, URL) and an operator must act. Other 4xx
# answers are about the records sent.
TRANSIENT_STATUSES = {401, 403, 404, 405, 408, 425, 429}


class TransientError(Exception):
    """The API could not take the batch now; nothing was persisted, retry it."""


class ApiClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self._session = session
        self._metrics = metrics or SchedulerMetrics()
        self._url = base_url + BATCH_PATH
        self._health_url = base_url + "/health"
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

    async def _post(self, work: Sequence[Work], trace: Trace) -> tuple[int, Any]:
        payload = jsoncodec.dumps({"items": [w.item for w in work]})
        headers = {**self._headers, TRACEPARENT: trace.traceparent}
        started = time.perf_counter()
        try:
            async with self._session.post(self._url, data=payload, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"API unreachable: {exc!r}") from exc
        finally:
            self._metrics.batch_duration.observe(time.perf_counter() - started)
        if status >= 500 or status in TRANSIENT_STATUSES:
            if status in (401, 403):
                log.error("the API refused the token (HTTP %d): check API_TOKEN", status)
            elif status in (404, 405):
                log.error("no batch endpoint at %s (HTTP %d): check API_URL", self._url, status)
            raise TransientError(f"API answered {status}")
        try:
            return status, jsoncodec.loads(raw) if raw else None
        except jsoncodec.JSONDecodeError:
            return status, raw.decode("utf-8", "replace")

    async def reachable(self) -> bool:
        try:
            async with asyncio.timeout(2), self._session.get(self._health_url) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


def rejected(work: Work, reason: str) -> Poison:
    return Poison(work.record, "api", reason, work.trace)
