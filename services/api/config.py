"""Settings of the API service."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def database_url(url: str, environ: Mapping[str, str]) -> str:
    """``DATABASE_URL`` with its ``sslmode`` checked, and plain on loopback by default.

    Without an ``sslmode`` (in the URL or in ``PGSSLMODE``) asyncpg tries TLS first
    (``prefer``), which on the same machine only costs a handshake per connection; a
    remote server keeps that default. TLS is asked for in the URL, e.g.
    ``?sslmode=verify-full&sslrootcert=/path/ca.pem``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # several hosts ("h1:5432,h2:5432") are left to asyncpg
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    mode = dict(query).get("sslmode")
    if mode is not None:
        if mode not in SSL_MODES:
            raise ConfigError(
                f"DATABASE_URL's sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}"
            )
        return url
    if environ.get("PGSSLMODE") or host is None or not _loopback(host):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("sslmode", "disable")])))


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
            future_timestamp_tolerance=future_timestamp_tolerance(env),
        )
