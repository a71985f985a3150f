"""Scratch databases: created on the project's PostgreSQL for a stage or a run, dropped after."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# How long a drop waits for an autovacuum worker to leave the database, and how often it tries.
DROP_WITHIN = 60.0
DROP_EVERY = 0.5


class Executes(Protocol):
    """What a drop needs of a connection (an ``asyncpg.Connection``)."""

    async def execute(self, query: str) -> str: ...


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url`` (a database URL)."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, name: str) -> AsyncIterator[str]:
    """Database ``name``, created on the server of ``server_url``: yields its URL, and drops
    it afterwards, even after a failure."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield database_url(server_url, name)
    finally:
        conn = await asyncpg.connect(server_url)
        try:
            await drop_database(conn, name)
        finally:
            await conn.close()


async def drop_database(
    conn: Executes, name: str, *, within: float = DROP_WITHIN, every: float = DROP_EVERY
) -> None:
    """``DROP DATABASE … WITH (FORCE)``, tried again for up to ``within`` seconds while it is
    refused for want of privilege: FORCE ends our own role's sessions, not an autovacuum
    worker (the server's own role) that a busy phase left on the database, and that worker
    is done in a moment."""
    deadline = time.monotonic() + within
    while True:
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(every)
