"""The API's pool of PostgreSQL connections, on the real server."""

from __future__ import annotations

from services.api.config import SQL_DIR
from services.api.database import Database

from ..conftest import FAST_RETRY
from ..helpers import fetchval


async def test_a_connection_goes_back_to_the_pool_without_a_reset_round_trip(
    database: str,
) -> None:
    db = Database(database, 1, SQL_DIR, FAST_RETRY)
    await db.open()
    try:
        pid = await db.in_transaction(
            lambda conn: conn.fetchval("SELECT pg_backend_pid()"), what="a transaction"
        )
        # The release happened; the server's last statement on that session is the COMMIT.
        last = await fetchval(database, "SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        assert last.upper() == "COMMIT;"
    finally:
        await db.close()


async def test_a_transaction_left_open_is_rolled_back_when_its_connection_goes_back(
    database: str,
) -> None:
    db = Database(database, 1, SQL_DIR, FAST_RETRY)
    await db.open()
    try:
        async with db.connection() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE left_open (id int)")
        async with db.connection() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None
    finally:
        await db.close()
