"""Typed settings read from an environment mapping.

Each service builds a frozen dataclass from ``os.environ`` (after ``.env`` is loaded by
python-dotenv in ``__main__``); tests build the same dataclasses from plain dicts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from .ordering import FUTURE_TIMESTAMP_TOLERANCE


def local_environ(directory: Path) -> dict[str, str]:
    """The settings a local run sees: ``.env.example``, then ``.env``, then the environment.

    The services read ``.env`` and the environment; ``make up`` copies ``.env.example`` to
    ``.env`` when missing. Tools that run beside them (tests, the benchmark) use this.
    """
    merged: dict[str, str] = {}
    for source in (
        dotenv_values(directory / ".env.example"),
        dotenv_values(directory / ".env"),
        os.environ,
    ):
        merged.update({key: value for key, value in source.items() if value is not None})
    return merged


class ConfigError(ValueError):
    """A setting is missing or malformed."""


class SettingsCatalog(dict[str, str]):
    """An environment that notes each setting read and its default (``--help``)."""

    REQUIRED = "(required)"

    def __init__(self) -> None:
        super().__init__()
        self.defaults: dict[str, str] = {}


class Env:
    """Typed reads of an environment mapping, naming the variable on error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _note(self, name: str, default: object) -> None:
        if isinstance(self._environ, SettingsCatalog):
            shown = SettingsCatalog.REQUIRED if default is None else str(default)
            self._environ.defaults.setdefault(name, shown)

    def text(self, name: str, default: str | None = None) -> str:
        self._note(name, default)
        value = self._environ.get(name, default)
        if value is None or value == "":
            if default is not None:
                return default
            raise ConfigError(f"{name} is required")
        return value

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        self._note(name, default)
        raw = self._environ.get(name) or str(default)
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, got {value}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(name, default).upper()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, minimum=1, maximum=65535)

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        self._note(name, default)
        raw = self._environ.get(name) or str(default)
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value


# RFC 6750's b64token: what a bearer token may contain, so that it fits in a header as is.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def api_tokens(env: Env) -> tuple[str, ...]:
    """The accepted bearer tokens: ``API_TOKENS`` (comma-separated), else ``API_TOKEN``.

    Several tokens are valid at once so that a new one can be rolled out before the old
    one is withdrawn; a client sends the first.
    """
    raw = env.text("API_TOKENS", "") or env.text("API_TOKEN", "")
    tokens = tuple(token.strip() for token in raw.split(",") if token.strip())
    if not tokens:
        raise ConfigError("API_TOKENS (or API_TOKEN) is required")
    for position, token in enumerate(tokens, start=1):
        if not TOKEN_PATTERN.fullmatch(token):
            # Never the token itself in the message: it ends up in logs.
            raise ConfigError(
                f"API_TOKENS: token {position} may only contain letters, digits and -._~+/ "
                "(then trailing '=')"
            )
    return tokens


def future_timestamp_tolerance(env: Env) -> float:
    """``FUTURE_TIMESTAMP_TOLERANCE_SECONDS``: how far ahead of the server's clock a record's
    timestamp may be (clock skew between machines); both services refuse one further ahead."""
    return env.number("FUTURE_TIMESTAMP_TOLERANCE_SECONDS", FUTURE_TIMESTAMP_TOLERANCE)


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "localhost:9092"
    topic_cadastro: str = "cadastro-produtos"
    topic_persistidos: str = "produtos-persistidos"
    topic_dlq: str = "cadastro-produtos.dlq"
    # Compacted: which dead letters were re-driven, by whom and where to (claims and
    # outcomes). Empty: the dead-letter topic's name followed by ".redrives".
    topic_dlq_redrives: str = ""
    partitions: int = 6
    replication_factor: int = 1
    # min.insync.replicas of the topics created: with acks=all, how many replicas hold a
    # write before it is acknowledged (2 with a replication factor of 3).
    min_insync_replicas: int = 1
    # Transport security, the same for every client (producers, consumers, admin).
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    # CA bundle that signs the brokers' certificates; empty: the system's CAs.
    ssl_cafile: str = ""

    def __post_init__(self) -> None:
        if not self.topic_dlq_redrives:
            object.__setattr__(self, "topic_dlq_redrives", f"{self.topic_dlq}.redrives")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @classmethod
    def from_env(cls, env: Env) -> KafkaConfig:
        protocol = env.choice("KAFKA_SECURITY_PROTOCOL", SECURITY_PROTOCOLS, cls.security_protocol)
        sasl = protocol.startswith("SASL_")
        cafile = env.text("KAFKA_SSL_CAFILE", "")
        topic_dlq = env.text("KAFKA_TOPIC_DLQ", cls.topic_dlq)
        if cafile and not Path(cafile).is_file():
            raise ConfigError(f"KAFKA_SSL_CAFILE must be a readable file, got {cafile!r}")
        return cls(
            bootstrap_servers=env.text("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            topic_cadastro=env.text("KAFKA_TOPIC_CADASTRO_PRODUTO", cls.topic_cadastro),
            topic_persistidos=env.text("KAFKA_TOPIC_PRODUTOS_PERSISTIDOS", cls.topic_persistidos),
            topic_dlq=topic_dlq,
            topic_dlq_redrives=env.text("KAFKA_TOPIC_DLQ_REDRIVES", f"{topic_dlq}.redrives"),
            partitions=env.integer("KAFKA_TOPIC_PARTITIONS", cls.partitions, minimum=1),
            replication_factor=env.integer(
                "KAFKA_TOPIC_REPLICATION_FACTOR", cls.replication_factor, minimum=1
            ),
            min_insync_replicas=env.integer(
                "KAFKA_TOPIC_MIN_INSYNC_REPLICAS", cls.min_insync_replicas, minimum=1
            ),
            security_protocol=protocol,
            sasl_mechanism=env.choice("KAFKA_SASL_MECHANISM", SASL_MECHANISMS, cls.sasl_mechanism),
            sasl_username=env.text("KAFKA_SASL_USERNAME", None if sasl else ""),
            sasl_password=env.text("KAFKA_SASL_PASSWORD", None if sasl else ""),
            ssl_cafile=cafile,
        )

    @property
    def topics(self) -> tuple[str, ...]:
        return (
            self.topic_cadastro,
            self.topic_persistidos,
            self.topic_dlq,
            self.topic_dlq_redrives,
        )

    @property
    def compacted_topics(self) -> tuple[str, ...]:
        """Topics that keep the latest record of each key rather than a time window."""
        return (self.topic_dlq_redrives,)


@dataclass(frozen=True)
class RetryConfig:
    """Capped exponential backoff with full jitter for transient failures."""

    initial_delay: float = 0.2
    max_delay: float = 5.0

    @classmethod
    def from_env(cls, env: Env) -> RetryConfig:
        return cls(
            initial_delay=env.number("RETRY_INITIAL_DELAY", cls.initial_delay, minimum=0.001),
            max_delay=env.number("RETRY_MAX_DELAY", cls.max_delay, minimum=0.001),
        )


@dataclass(frozen=True)
class HttpConfig:
    """What a client may take of a service's HTTP server: time and connections."""

    # All of a request's headers must arrive within this, from its first byte (else 408).
    header_timeout: float = 10.0
    # All of its body within this, from the end of its headers (else 408).
    body_timeout: float = 30.0
    # An idle connection is closed after this.
    keepalive_timeout: float = 75.0
    # Open connections per process; past it a new one is answered 503 and closed.
    max_connections: int = 1000

    @classmethod
    def from_env(cls, env: Env) -> HttpConfig:
        return cls(
            header_timeout=env.number(
                "HTTP_HEADER_TIMEOUT_SECONDS", cls.header_timeout, minimum=0.1
            ),
            body_timeout=env.number("HTTP_BODY_TIMEOUT_SECONDS", cls.body_timeout, minimum=0.1),
            keepalive_timeout=env.number(
                "HTTP_KEEPALIVE_TIMEOUT_SECONDS", cls.keepalive_timeout, minimum=0.1
            ),
            max_connections=env.integer("HTTP_MAX_CONNECTIONS", cls.max_connections, minimum=1),
        )
