"""The scheduler's client of the API's batch endpoint, against a stand-in API.

The stand-in implements just enough of ``POST /produto/scheduler/batch`` to play each answer;
what is under test is the client's logic: splitting, poison and transient failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from pytest_aiohttp import AiohttpServer

from services.common import jsoncodec
from services.common.tracing import TRACEPARENT, Trace
from services.scheduler.api_client import BATCH_PATH, ApiClient, TransientError
from services.scheduler.records import Poison, Work, invalid_fields, to_work

from ..helpers import encode, manual_record
from .fakes import FakeRecord

TOKEN = "stand-in-token"
TRACE = Trace("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
# Given the product ids of a batch, the stand-in's answer.
Answer = Callable[[list[str]], web.Response]


class StandInApi:
    """Records every batch it is sent and answers it with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.batches: list[list[str]] = []
        self.requests: list[tuple[dict[str, str], Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = jsoncodec.loads(await request.read())
        self.requests.append((dict(request.headers), body))
        ids = [item["product"]["id"] for item in body["items"]]
        self.batches.append(ids)
        return self.answer(ids)

    def accepted(self) -> list[str]:
        """Every id in a batch the stand-in answered 200, in the order sent."""
        return [i for ids in self.batches if self.answer(ids).status == 200 for i in ids]


def results(ids: list[str], rejected: dict[str, Any] | None = None) -> web.Response:
    """A 200 answer: one result per item, ``rejected`` ones with their error."""
    rejected = rejected or {}
    return web.json_response(
        {
            "results": [
                {"index": index, "id": i, "status": "rejected", "error": rejected[i]}
                if i in rejected
                else {"index": index, "id": i, "status": "created"}
                for index, i in enumerate(ids)
            ]
        }
    )


def refused(status: int, code: str = "bad_request") -> web.Response:
    return web.json_response({"error": {"code": code, "message": "Refused."}}, status=status)


def batch(count: int) -> list[Work]:
    return [
        to_work(FakeRecord(encode(manual_record(f"p{n}")), offset=100 + n)) for n in range(count)
    ]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def serve(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession, answer: Answer
) -> tuple[ApiClient, StandInApi]:
    stand_in = StandInApi(answer)
    app = web.Application()
    app.router.add_post(BATCH_PATH, stand_in.handle)
    server = await aiohttp_server(app)
    return ApiClient(session, str(server.make_url("")).rstrip("/"), TOKEN), stand_in


async def test_a_batch_the_api_accepts_is_posted_once_and_leaves_no_poison(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    client, api = await serve(aiohttp_server, session, results)
    work = batch(3)

    assert await client.persist(work, TRACE) == []
    assert api.batches == [["p0", "p1", "p2"]]
    headers, body = api.requests[0]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert headers[TRACEPARENT] == TRACE.traceparent
    assert body == jsoncodec.loads(jsoncodec.dumps({"items": [w.item for w in work]}))


async def test_a_batch_refused_as_too_large_is_split_in_halves_until_each_part_fits(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    def at_most_two(ids: list[str]) -> web.Response:
        return results(ids) if len(ids) <= 2 else refused(413, "body_too_large")

    client, api = await serve(aiohttp_server, session, at_most_two)

    assert await client.persist(batch(5), TRACE) == []
    assert api.batches == [
        ["p0", "p1", "p2", "p3", "p4"],
        ["p0", "p1"],
        ["p2", "p3", "p4"],
        ["p2"],
        ["p3", "p4"],
    ]
    assert api.accepted() == ["p0", "p1", "p2", "p3", "p4"]
    assert {headers[TRACEPARENT] for headers, _ in api.requests} == {TRACE.traceparent}


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_a_record_the_api_refuses_even_alone_is_the_only_poison(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession, status: int
) -> None:
    def refuse_p5(ids: list[str]) -> web.Response:
        return refused(status) if "p5" in ids else results(ids)

    client, api = await serve(aiohttp_server, session, refuse_p5)
    work = batch(8)

    poison = await client.persist(work, TRACE)

    assert poison == [
        Poison(
            work[5].record,
            "api",
            f'API answered {status}: {{"error":{{"code":"bad_request","message":"Refused."}}}}',
        )
    ]
    assert api.batches == [
        ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"],
        ["p0", "p1", "p2", "p3"],
        ["p4", "p5", "p6", "p7"],
        ["p4", "p5"],
        ["p4"],
        ["p5"],
        ["p6", "p7"],
    ]
    assert api.accepted() == ["p0", "p1", "p2", "p3", "p4", "p6", "p7"]


async def test_a_lone_refused_record_whose_answer_is_not_json_is_poison_with_the_text(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    client, _ = await serve(
        aiohttp_server, session, lambda ids: web.Response(status=400, text="Bad Request")
    )
    work = batch(1)

    assert await client.persist(work, TRACE) == [
        Poison(work[0].record, "api", 'API answered 400: "Bad Request"')
    ]


async def test_records_rejected_in_a_200_answer_are_poison_with_their_fields(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    error = {
        "code": "validation_failed",
        "message": "The record is invalid.",
        "fields": {"product": {"pricing": {"amount": ["Must have at most 2 decimal places."]}}},
    }
    client, api = await serve(aiohttp_server, session, lambda ids: results(ids, {"p1": error}))
    work = batch(3)

    poison = await client.persist(work, TRACE)

    assert poison == [Poison(work[1].record, "api", invalid_fields(error))]
    assert api.batches == [["p0", "p1", "p2"]]


async def test_rejected_results_of_a_split_batch_point_at_the_right_records(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    error = {"code": "validation_failed", "message": "The record is invalid.", "fields": {}}

    def two_at_most_rejecting_p3(ids: list[str]) -> web.Response:
        return results(ids, {"p3": error}) if len(ids) <= 2 else refused(413, "body_too_large")

    client, _ = await serve(aiohttp_server, session, two_at_most_rejecting_p3)
    work = batch(4)

    assert await client.persist(work, TRACE) == [
        Poison(work[3].record, "api", invalid_fields(error))
    ]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 401, 403, 404, 405])
async def test_an_answer_that_says_try_later_raises_transient_error_without_splitting(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession, status: int
) -> None:
    client, api = await serve(aiohttp_server, session, lambda ids: refused(status, "later"))

    with pytest.raises(TransientError, match=f"API answered {status}"):
        await client.persist(batch(4), TRACE)
    assert api.batches == [["p0", "p1", "p2", "p3"]]


async def test_a_transient_answer_to_a_half_raises_transient_error(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    def too_large_then_unavailable(ids: list[str]) -> web.Response:
        return refused(413, "body_too_large") if len(ids) > 2 else refused(503, "unavailable")

    client, _ = await serve(aiohttp_server, session, too_large_then_unavailable)

    with pytest.raises(TransientError, match="API answered 503"):
        await client.persist(batch(4), TRACE)


async def test_connection_refused_raises_transient_error(
    session: aiohttp.ClientSession,
) -> None:
    client = ApiClient(session, f"http://127.0.0.1:{unused_port()}", TOKEN)

    with pytest.raises(TransientError, match="API unreachable"):
        await client.persist(batch(2), TRACE)


async def test_an_api_that_does_not_answer_in_time_raises_transient_error(
    aiohttp_server: AiohttpServer,
) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"results": []})

    app = web.Application()
    app.router.add_post(BATCH_PATH, hang)
    server = await aiohttp_server(app)
    timeout = aiohttp.ClientTimeout(total=0.05)
    async with aiohttp.ClientSession(timeout=timeout) as impatient:
        client = ApiClient(impatient, str(server.make_url("")).rstrip("/"), TOKEN)
        try:
            with pytest.raises(TransientError, match="API unreachable"):
                await client.persist(batch(2), TRACE)
        finally:
            release.set()


# --- several API URLs: spreading and failover ---------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def replicas(
    aiohttp_server: AiohttpServer, *answers: Answer
) -> tuple[list[str], list[StandInApi]]:
    stand_ins, urls = [], []
    for answer in answers:
        stand_in = StandInApi(answer)
        app = web.Application()
        app.router.add_post(BATCH_PATH, stand_in.handle)
        app.router.add_get("/health", health)
        server = await aiohttp_server(app)
        stand_ins.append(stand_in)
        urls.append(str(server.make_url("")).rstrip("/"))
    return urls, stand_ins


async def test_batches_are_spread_round_robin_over_the_api_urls(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    urls, (first, second) = await replicas(aiohttp_server, results, results)
    client = ApiClient(session, urls, TOKEN)

    for _ in range(4):
        assert await client.persist(batch(1), TRACE) == []

    assert (len(first.batches), len(second.batches)) == (2, 2)


async def test_a_replica_that_refuses_connections_is_set_aside_and_the_batch_goes_to_another(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    urls, (live,) = await replicas(aiohttp_server, results)
    dead = f"http://127.0.0.1:{unused_port()}"
    clock = Clock()
    client = ApiClient(session, [dead, *urls], TOKEN, clock=clock)

    for _ in range(4):  # the first attempt finds the dead one, the rest skip it
        assert await client.persist(batch(2), TRACE) == []

    assert len(live.batches) == 4
    assert client.endpoints[0].failures == 1
    assert client.endpoints[0].down_until == clock.now + 1.0


async def test_a_replica_set_aside_is_tried_again_after_its_cool_down_and_used_when_it_answers(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    failing = {"on": True}

    def flaky(ids: list[str]) -> web.Response:
        return refused(503, "unavailable") if failing["on"] else results(ids)

    urls, (flaky_api, steady_api) = await replicas(aiohttp_server, flaky, results)
    clock = Clock()
    client = ApiClient(session, urls, TOKEN, clock=clock)

    await client.persist(batch(1), TRACE)  # flaky answers 503: set aside for 1 s
    await client.persist(batch(1), TRACE)
    assert (len(flaky_api.batches), len(steady_api.batches)) == (1, 2)

    clock.now += 1.0
    await client.persist(batch(1), TRACE)  # tried again, fails again: set aside for 2 s
    assert client.endpoints[0].down_until == clock.now + 2.0

    failing["on"] = False
    clock.now += 2.0
    before = len(flaky_api.batches)
    for _ in range(4):
        await client.persist(batch(1), TRACE)
    assert client.endpoints[0].failures == 0
    assert len(flaky_api.batches) - before == 2  # back in the rotation


async def test_when_every_replica_fails_each_is_tried_once_and_the_batch_is_transient(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    urls, apis = await replicas(
        aiohttp_server, lambda ids: refused(503, "later"), lambda ids: refused(502, "later")
    )
    client = ApiClient(session, [*urls, f"http://127.0.0.1:{unused_port()}"], TOKEN)

    with pytest.raises(TransientError):
        await client.persist(batch(2), TRACE)
    assert [len(api.batches) for api in apis] == [1, 1]

    # All set aside: the next batch still tries every one (the soonest back first).
    with pytest.raises(TransientError):
        await client.persist(batch(2), TRACE)
    assert [len(api.batches) for api in apis] == [2, 2]


async def test_a_record_refused_for_its_content_is_not_sent_to_another_replica(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    urls, (first, second) = await replicas(
        aiohttp_server, lambda ids: refused(400), lambda ids: refused(400)
    )
    client = ApiClient(session, urls, TOKEN)

    poison = await client.persist(batch(1), TRACE)

    assert len(poison) == 1
    assert len(first.batches) + len(second.batches) == 1


async def test_the_api_is_reachable_while_any_replica_answers_health(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    urls, _ = await replicas(aiohttp_server, results)
    dead = f"http://127.0.0.1:{unused_port()}"

    assert await ApiClient(session, [dead, *urls], TOKEN).reachable()
    assert not await ApiClient(session, [dead], TOKEN).reachable()
