"""The schema in sql/ is applied at start-up: each file once, even by replicas starting together."""

from __future__ import annotations

import asyncio

import asyncpg

from services.api.config import SQL_DIR
from services.api.database import apply_migrations


async def test_replicas_starting_together_apply_each_file_once(database: str) -> None:
    connections = [await asyncpg.connect(database) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(apply_migrations(conn, SQL_DIR) for conn in connections))
        again = await apply_migrations(connections[0], SQL_DIR)
        recorded = await connections[0].fetch("SELECT name FROM schema_migrations ORDER BY name")
    finally:
        for conn in connections:
            await conn.close()

    files = sorted(path.name for path in SQL_DIR.glob("*.sql"))
    assert sorted(name for names in applied for name in names) == files
    assert again == []
    assert [row["name"] for row in recorded] == files
