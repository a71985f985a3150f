"""The benchmark's scratch databases: the drop that waits out an autovacuum worker."""

from __future__ import annotations

import asyncpg
import pytest

from bench.database import database_url, drop_database


class Refusing:
    """A connection whose DROP DATABASE is refused ``times`` times, as while an autovacuum
    worker (which FORCE may not end) is on the database."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.queries: list[str] = []

    async def execute(self, query: str) -> str:
        self.queries.append(query)
        if len(self.queries) <= self.times:
            raise asyncpg.InsufficientPrivilegeError("must be a superuser to terminate")
        return "DROP DATABASE"


async def test_a_refused_drop_is_tried_again_until_it_goes_through() -> None:
    conn = Refusing(times=2)

    await drop_database(conn, "bench_1234", within=10, every=0)

    assert conn.queries == ['DROP DATABASE IF EXISTS "bench_1234" WITH (FORCE)'] * 3


async def test_a_drop_still_refused_at_the_deadline_fails() -> None:
    conn = Refusing(times=1_000)

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await drop_database(conn, "bench_1234", within=0, every=0)
    assert len(conn.queries) == 1


def test_the_scratch_database_is_on_the_same_server_with_the_same_options() -> None:
    server = "postgresql://fluxo:secret@localhost:5432/fluxo?sslmode=disable"

    assert database_url(server, "bench_1234") == (
        "postgresql://fluxo:secret@localhost:5432/bench_1234?sslmode=disable"
    )


def test_a_scratch_database_of_a_cluster_keeps_every_host_and_the_query() -> None:
    server = (
        "postgresql://fluxo:fluxo@localhost:5432,localhost:5433,localhost:5434/fluxo"
        "?target_session_attrs=read-write"
    )
    assert database_url(server, "bench_1") == (
        "postgresql://fluxo:fluxo@localhost:5432,localhost:5433,localhost:5434/bench_1"
        "?target_session_attrs=read-write"
    )
