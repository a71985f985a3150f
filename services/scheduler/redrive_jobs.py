"""Many dead letters re-driven as they are, at a rate: answered when done up to a thousand,
run as a job beyond. A job lives in this process only; cut short by a restart, it stops,
and the same request sent again re-drives the rest (each attempt of an entry is re-driven
once, so what was done answers ``already``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from ..common import jsoncodec
from ..common.contracts import load_transformed
from ..common.errors import ApiError
from ..common.transform import format_kafka_timestamp, transform
from .api_client import ApiClient, TransientError
from .dead_letter_index import DeadLetterIndex, Entry
from .dead_letters import DeadLetter
from .records import PoisonError, decode
from .redrives import Redrive, Redriver

log = logging.getLogger(__name__)

# Up to this many, a request answers when every entry is done; beyond, a job.
SYNCHRONOUS_MAX = 1000
RATE_DEFAULT = 100
RATE_MAX = 5000
# Finished jobs kept for GET /dead-letters/jobs/{id}.
JOBS_KEPT = 100

OUTCOME_OF_STATUS = {404: "not_found", 409: "already", 422: "refused", 503: "unavailable"}


def verdict(dead: DeadLetter, stored: str | None = None) -> dict[str, Any]:
    """A dry run of one entry as it is: the scheduler's validation, then the API's schema;
    ``stale`` when the product's row (its availability timestamp ``stored``) is newer."""
    position = {"partition": dead.position.partition, "offset": dead.position.offset}
    answer: dict[str, Any] = {"entry": str(dead.source), "position": position}
    try:
        product = decode(dead.value)
    except PoisonError as error:
        return {**answer, "scheduler": {"valid": False, "reason": error.reason}}
    answer["scheduler"] = {"valid": True}
    try:
        load_transformed(jsoncodec.loads(jsoncodec.dumps(transform(product, dead.timestamp))))
    except (ValidationError, OverflowError, ValueError) as error:
        reason = error.messages if isinstance(error, ValidationError) else str(error)
        return {**answer, "api": {"valid": False, "reason": reason}}
    answer["api"] = {
        "valid": True,
        "note": "A refusal by the database (stage api) is only known by re-driving.",
    }
    if stored is not None and stored > format_kafka_timestamp(dead.timestamp):
        answer["stale"] = True
        answer["warning"] = (
            f"The product's row is newer ({stored}): the re-drive would leave it unchanged."
        )
    return answer


@dataclass
class Job:
    """A re-drive of many entries, one at a time at ``rate`` per second."""

    id: str
    positions: list[tuple[int, int]]
    rate: float
    token: str = field(repr=False)
    state: str = "running"  # running, done, cancelled
    outcomes: dict[str, int] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def describe(self, with_results: bool = True) -> dict[str, Any]:
        described: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "total": len(self.positions),
            "done": len(self.results),
            "outcomes": dict(self.outcomes),
        }
        if with_results:
            described["results"] = self.results
        return described


class RedriveJobs:
    def __init__(self, redriver: Redriver, index: DeadLetterIndex, api: ApiClient) -> None:
        self._redriver = redriver
        self._index = index
        self._api = api
        self.jobs: dict[str, Job] = {}

    def entries_at(self, positions: list[tuple[int, int]]) -> tuple[list[Entry], list[Any]]:
        """The entries at the positions given (each once), and the positions not found."""
        found: dict[str, Entry] = {}
        missing: list[Any] = []
        for partition, offset in positions:
            entry = self._index.at(partition, offset)
            if entry is None:
                missing.append({"partition": partition, "offset": offset})
            else:
                found.setdefault(str(entry.source), entry)
        return list(found.values()), missing

    async def dry_run(self, entries: list[Entry]) -> list[dict[str, Any]]:
        """Each entry's verdict; the product's row is asked of the API (a few at a time)
        for the entries valid as they are."""
        asking = asyncio.Semaphore(8)

        async def one(entry: Entry) -> dict[str, Any]:
            found = verdict(entry.latest)
            if not found.get("api", {}).get("valid"):
                return found
            product = decode(entry.latest.value)["productId"]
            try:
                async with asking:
                    stored = await self._api.stored_timestamp(product)
            except TransientError:
                return {**found, "stale": None, "warning": "The API did not answer."}
            return verdict(entry.latest, stored)

        return list(await asyncio.gather(*(one(entry) for entry in entries)))

    def start(self, entries: list[Entry], rate: float, token: str) -> Job:
        positions = [
            (entry.latest.position.partition, entry.latest.position.offset) for entry in entries
        ]
        job = Job(uuid.uuid4().hex, positions, rate, token)
        job.task = asyncio.create_task(self._run(job), name=f"redrive-job-{job.id}")
        self.jobs[job.id] = job
        finished = [key for key, kept in self.jobs.items() if kept.state != "running"]
        for key in finished[: max(0, len(self.jobs) - JOBS_KEPT)]:
            del self.jobs[key]
        return job

    async def run_now(self, entries: list[Entry], rate: float, token: str) -> Job:
        job = self.start(entries, rate, token)
        assert job.task is not None
        await asyncio.shield(job.task)
        return job

    async def _run(self, job: Job) -> None:
        started = time.monotonic()
        try:
            for done, (partition, offset) in enumerate(job.positions):
                # At most ``rate`` a second: each waits for its slot in the schedule.
                delay = started + done / job.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                position = {"partition": partition, "offset": offset}
                try:
                    result = await self._redriver.redrive(Redrive(partition, offset), job.token)
                    outcome = "produced"
                except ApiError as error:
                    outcome = OUTCOME_OF_STATUS.get(error.status, "failed")
                    result = {"error": error.message}
                job.outcomes[outcome] = job.outcomes.get(outcome, 0) + 1
                job.results.append({"position": position, "outcome": outcome, **result})
            job.state = "done"
        except asyncio.CancelledError:
            job.state = "cancelled"
            raise
        except Exception:
            log.exception("re-drive job %s failed", job.id)
            job.state = "failed"

    async def cancel(self, job: Job) -> None:
        if job.task is not None and not job.task.done():
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task

    async def stop(self) -> None:
        for job in list(self.jobs.values()):
            await self.cancel(job)
