"""Settings of the API service."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ..common.config import (
    ConfigError,
    Env,
    HttpConfig,
    KafkaConfig,
    RetryConfig,
    api_tokens,
    future_timestamp_tolerance,
)
from ..common.ordering import FUTURE_TIMESTAMP_TOLERANCE

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

# The relay renews its lease at least every second (relay_slots.REBALANCE_INTERVAL) while
# idle: a shorter lease would lapse between two renewals.
RELAY_LEASE_MIN = 2.0

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What the API may ask of the server a connection lands on: it writes, so never a standby.
SESSION_ATTRS = ("any", "primary", "read-write")


def database_hosts(url: str) -> list[tuple[str, int | None]]:
    """The hosts of a PostgreSQL URL, several in a high-availability one
    (``postgresql://u:p@h1:5432,h2:5433/db``), each with its port when given.

    ``urlsplit(url).port`` cannot read such a URL; this reads ``[::1]:5432`` too.
    """
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    hosts: list[tuple[str, int | None]] = []
    for item in netloc.split(","):
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        if not host:
            continue  # a socket directory or host given in the query instead
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"DATABASE_URL's port must be from 1 to 65535, got {port!r}")
        hosts.append((unquote(host), int(port) if port else None))
    return hosts


def database_url(url: str, environ: Mapping[str, str]) -> str:
    """``DATABASE_URL`` with its ``sslmode`` and ``target_session_attrs`` checked, plain on
    loopback by default, and bound to the writable server when it names several.

    Without an ``sslmode`` (in the URL or in ``PGSSLMODE``) asyncpg tries TLS first
    (``prefer``), which on the same machine only costs a handshake per connection; a
    remote server keeps that default. TLS is asked for in the URL, e.g.
    ``?sslmode=verify-full&sslrootcert=/path/ca.pem``. Of several hosts (a Patroni
    cluster, say) a connection must land on the primary: ``target_session_attrs`` is
    ``read-write`` unless the URL or ``PGTARGETSESSIONATTRS`` says otherwise.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed "[" of an IPv6 address, say
        raise ConfigError(f"DATABASE_URL is not a URL: {exc}") from None
    hosts = database_hosts(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(query)
    mode = given.get("sslmode")
    if mode is not None and mode not in SSL_MODES:
        raise ConfigError(
            f"DATABASE_URL's sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}"
        )
    attrs = given.get("target_session_attrs", environ.get("PGTARGETSESSIONATTRS"))
    if attrs is not None and attrs not in SESSION_ATTRS:
        raise ConfigError(
            "DATABASE_URL's target_session_attrs must be one of "
            f"{', '.join(SESSION_ATTRS)} (the API writes), got {attrs!r}"
        )
    added: list[tuple[str, str]] = []
    if (
        mode is None
        and not environ.get("PGSSLMODE")
        and hosts
        and all(_loopback(host) for host, _ in hosts)
    ):
        added.append(("sslmode", "disable"))
    if attrs is None and len(hosts) > 1:
        added.append(("target_session_attrs", "read-write"))
    if not added:
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, *added])))


@dataclass(frozen=True)
class ApiConfig:
    api_tokens: tuple[str, ...] = field(repr=False)
    database_url: str = field(repr=False)
    port: int = 8000
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    database_pool_size: int = 10
    max_body_bytes: int = 8 * 1024 * 1024
    outbox_batch_size: int = 1000
    outbox_poll_interval: float = 1.0
    # Seconds a relay publishes after its lock connection last answered (its lease): shorter
    # than the fastest failover (docs/high-availability.md, "How the relay is fenced").
    outbox_relay_lease: float = 5.0
    sql_dir: Path = SQL_DIR
    # Seconds a record's availability timestamp may be ahead of this server's clock.
    future_timestamp_tolerance: float = FUTURE_TIMESTAMP_TOLERANCE

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiConfig:
        env = Env(environ)
        return cls(
            api_tokens=api_tokens(env),
            database_url=database_url(env.text("DATABASE_URL"), environ),
            port=env.port("API_PORT", cls.port),
            kafka=KafkaConfig.from_env(env),
            retry=RetryConfig.from_env(env),
            http=HttpConfig.from_env(env),
            database_pool_size=env.integer("DATABASE_POOL_SIZE", cls.database_pool_size, minimum=1),
            max_body_bytes=env.integer("API_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024),
            outbox_batch_size=env.integer("OUTBOX_BATCH_SIZE", cls.outbox_batch_size, minimum=1),
            outbox_poll_interval=env.number(
                "OUTBOX_POLL_INTERVAL", cls.outbox_poll_interval, minimum=0.01
            ),
            outbox_relay_lease=env.number(
                "OUTBOX_RELAY_LEASE_SECONDS", cls.outbox_relay_lease, minimum=RELAY_LEASE_MIN
            ),
            future_timestamp_tolerance=future_timestamp_tolerance(env),
        )
