"""The PostgreSQL pool and the schema migrations applied at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..common.config import RetryConfig
from ..common.errors import Unavailable
from ..common.retry import retry
from .config import database_hosts

log = logging.getLogger(__name__)

T = TypeVar("T")

# Advisory lock keys (any constants, unique within the database).
MIGRATIONS_LOCK = 7_204_311_001
# Taken exclusively by relays of versions before relay slots, shared by slot relays.
OUTBOX_RELAY_LOCK = 7_204_311_002

# What PostgreSQL being down or restarting looks like to a client.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    # A pooled connection that received the server's shutdown notice but not yet its EOF is
    # still handed out; its next statement fails with "cannot switch to state 15; another
    # operation (2) is in progress" (a client-side error: nothing reached the server).
    asyncpg.exceptions.InternalClientError,
)

# What a statement meets on a server that no longer takes this API's writes: one gone or
# shutting down (above: 57P01 admin shutdown, 57P02 crash shutdown, 57P03 starting or in
# recovery are OperatorInterventionError), or a standby (25006: a demoted primary, or a
# database made read-only). Every pooled connection points at that server: the pool's
# connections are expired, and new ones land on the writable server (target_session_attrs).
LOST_PRIMARY: tuple[type[BaseException], ...] = (
    *DATABASE_DOWN,
    asyncpg.ReadOnlySQLTransactionError,
)


class PrimaryLost(Unavailable):
    """A statement met a server gone, shutting down or read-only; the pool was expired, so
    running it again lands on the primary of now."""


# Seconds to reach one host of a URL that names several. asyncpg's connect timeout covers
# all of them at once: a host that never answers (its machine vanished, no reset) would use
# it up and hide the others. Each host gets its own.
HOST_CONNECT_TIMEOUT = 3.0


async def connect(dsn: str, **settings: Any) -> asyncpg.Connection:
    """``asyncpg.connect``, trying a multi-host URL's hosts one by one, in order, each within
    ``HOST_CONNECT_TIMEOUT``; ``target_session_attrs`` (in the URL) still chooses among them."""
    hosts = database_hosts(dsn)
    if len(hosts) < 2:
        connection: asyncpg.Connection = await asyncpg.connect(dsn, **settings)
        return connection
    settings["timeout"] = HOST_CONNECT_TIMEOUT
    failure: BaseException | None = None
    for host, port in hosts:
        try:
            connection = await asyncpg.connect(dsn, host=host, port=port, **settings)
        except DATABASE_DOWN as exc:  # refused, silent, starting, a standby: the next one
            failure = exc
        else:
            return connection
    assert failure is not None
    raise failure


READY_TIMEOUT = 2.0

# Whether the server of a connection takes writes now.
WRITABLE = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"

# What a transaction meets when another one writes the same rows at the same time; the
# transaction was rolled back and may simply run again.
CONFLICTING_WRITERS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
TRANSACTION_ATTEMPTS = 5


# What a pooled connection is to the type checker (asyncpg-stubs): a proxy of a Connection.
Connection = asyncpg.Connection | PoolConnectionProxy


async def apply_migrations(conn: Connection, sql_dir: Path) -> list[str]:
    """Apply each ``sql/*.sql`` file once, in name order, under an advisory lock.

    The lock serialises API replicas starting at the same time; each file runs in its own
    transaction together with its entry in ``schema_migrations``.
    """
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in sorted(sql_dir.glob("*.sql")):  # noqa: ASYNC240 (a few local files, once)
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            log.info("applied migration %s", path.name)
            applied_now.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK)
    return applied_now


async def _keep_session(conn: Connection) -> None:
    """What a pooled connection needs between two uses: nothing.

    asyncpg's default reset runs a query (unlock advisory locks, close cursors, UNLISTEN,
    RESET ALL) each time a connection goes back to the pool: a round trip per request. Pooled
    connections here run transactions and leave no session state behind (the relay's
    advisory locks and LISTEN live on its own connection; the migrations' lock is released
    in a ``finally``); asyncpg still rolls back a transaction left open before calling this.
    """


def node_of(conn: Connection) -> str:
    """The server a connection reached, as the URL names it: ``localhost:5433``."""
    # asyncpg keeps the address it connected to (of the URL's hosts, the one that matched
    # target_session_attrs) on the connection, and has no public accessor for it.
    address = getattr(conn, "_addr", None)
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)  # a Unix socket's path


class Database:
    """A pool opened in the background: the API starts, answering 503, while PostgreSQL is down.

    The pool follows the primary: a connection that meets a server gone, shutting down or
    read-only expires every pooled connection, so none to that server is lent again.
    ``primary`` names the writable server last seen (None while there is none);
    ``on_primary_change`` is called when it is another one than before.
    """

    def __init__(
        self,
        dsn: str,
        pool_size: int,
        sql_dir: Path,
        retry: RetryConfig,
        on_primary_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self._pool_size = pool_size
        self._sql_dir = sql_dir
        self._retry = retry
        self._pool: asyncpg.Pool | None = None
        self._opened = asyncio.Event()
        self._on_primary_change = on_primary_change
        self.primary: str | None = None
        self._last_primary: str | None = None

    async def open(self) -> None:
        async def attempt() -> asyncpg.Pool:
            pool = await asyncpg.create_pool(
                self.dsn,
                # The stubs want asyncpg.connect's whole signature; this passes it all on.
                connect=cast(Any, connect),
                min_size=1,
                max_size=self._pool_size,
                command_timeout=30,
                reset=_keep_session,
            )
            try:
                async with pool.acquire() as conn:
                    await apply_migrations(conn, self._sql_dir)
            except BaseException:
                await pool.close()
                raise
            return pool

        self._pool = await retry(
            attempt, what="connecting to PostgreSQL", config=self._retry, log=log
        )
        self._opened.set()
        log.info("connected to PostgreSQL; schema up to date")

    async def wait_open(self) -> None:
        """Return once the pool is open and the schema migrated."""
        await self._opened.wait()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; PostgreSQL being down is answered as 503."""
        pool = self._pool
        if pool is None:
            raise Unavailable("The database is not reachable yet.")
        try:
            conn = await pool.acquire(timeout=10)
        except TimeoutError as exc:  # every connection lent out (or a connect hanging)
            raise Unavailable("No database connection came free in time.") from exc
        except LOST_PRIMARY as exc:
            await self._lost_primary(pool, exc)
        try:
            yield conn
        except LOST_PRIMARY as exc:
            # Useless now, and a silent one would hold up its release: dropped at once
            # (one whose server closed it was handed back to the pool by asyncpg already).
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            await self._lost_primary(pool, exc)
        finally:
            await pool.release(conn)

    async def _lost_primary(self, pool: asyncpg.Pool, exc: BaseException) -> NoReturn:
        log.warning("database unavailable (%s): %s", type(exc).__name__, exc)
        self.primary = None
        await pool.expire_connections()
        raise PrimaryLost("The database is not reachable, or takes no writes.") from exc

    def pool_in_use(self) -> float:
        pool = self._pool
        return pool.get_size() - pool.get_idle_size() if pool is not None else 0

    def pool_size(self) -> float:
        return self._pool.get_size() if self._pool is not None else 0

    async def in_transaction(self, work: Callable[[Connection], Awaitable[T]], *, what: str) -> T:
        """Run ``work`` in one transaction on a pooled connection, as ``run`` does."""

        async def transaction(conn: Connection) -> T:
            async with conn.transaction():
                return await work(conn)

        return await self.run(transaction, what=what)

    async def run(self, work: Callable[[Connection], Awaitable[T]], *, what: str) -> T:
        """Run ``work`` on a pooled connection: one statement is a transaction by itself.

        A deadlock or a serialization failure (a concurrent writer of the same rows) rolls
        the transaction back; so does a server gone, shutting down or read-only (a failover),
        after which the work lands on the new primary. Either runs again a few times, then
        is answered 503. Running again a write whose commit went unanswered is safe: the
        write-order rule makes the second run change nothing (and enqueue no event) when the
        first one committed.
        """

        async def attempt() -> T:
            async with self.connection() as conn:
                return await work(conn)

        try:
            return await retry(
                attempt,
                what=what,
                config=self._retry,
                log=log,
                retry_on=(*CONFLICTING_WRITERS, PrimaryLost),
                attempts=TRANSACTION_ATTEMPTS,
            )
        except CONFLICTING_WRITERS as exc:
            raise Unavailable(
                "Concurrent writers of the same products kept conflicting; nothing was "
                "written. Try again."
            ) from exc

    async def ready(self) -> bool:
        """Whether PostgreSQL answers; notes whether its server takes writes (``primary``)."""
        try:
            async with asyncio.timeout(READY_TIMEOUT + 1), self.connection() as conn:
                await self.note_primary(conn)
        except (Unavailable, TimeoutError):  # TimeoutError: no pooled connection came free
            return False
        return True

    async def note_primary(self, conn: Connection) -> None:
        """Note whether the server of ``conn`` (a pooled connection) takes writes.

        A server that does not answer within READY_TIMEOUT is lost (its machine vanished
        without a reset), and a standby (no target_session_attrs, or a stale connection) is
        not the primary: either way the pool is expired, so the next connections are opened
        anew, on the primary.
        """
        writable = await conn.fetchval(WRITABLE, timeout=READY_TIMEOUT)
        if writable:
            self._found_primary(node_of(conn))
        elif self._pool is not None:
            self.primary = None
            await self._pool.expire_connections()

    def _found_primary(self, node: str) -> None:
        previous, self.primary = self._last_primary, node
        self._last_primary = node
        if previous is not None and previous != node:
            log.warning("the database primary moved from %s to %s", previous, node)
            if self._on_primary_change is not None:
                self._on_primary_change(previous, node)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
