"""Typed settings read from an environment mapping.

Each service builds a frozen dataclass from ``os.environ`` (after ``.env`` is loaded by
python-dotenv in ``__main__``); tests build the same dataclasses from plain dicts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values


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


class Env:
    """Typed reads of an environment mapping, naming the variable on error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str | None = None) -> str:
        value = self._environ.get(name, default)
        if value is None or value == "":
            if default is not None:
                return default
            raise ConfigError(f"{name} is required")
        return value

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
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

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, minimum=1, maximum=65535)

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self._environ.get(name) or str(default)
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "localhost:9092"
    topic_cadastro: str = "cadastro-produtos"
    topic_persistidos: str = "produtos-persistidos"
    topic_dlq: str = "cadastro-produtos.dlq"
    partitions: int = 6
    replication_factor: int = 1
    # min.insync.replicas of the topics created: with acks=all, how many replicas hold a
    # write before it is acknowledged (2 with a replication factor of 3).
    min_insync_replicas: int = 1

    @classmethod
    def from_env(cls, env: Env) -> KafkaConfig:
        return cls(
            bootstrap_servers=env.text("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            topic_cadastro=env.text("KAFKA_TOPIC_CADASTRO_PRODUTO", cls.topic_cadastro),
            topic_persistidos=env.text("KAFKA_TOPIC_PRODUTOS_PERSISTIDOS", cls.topic_persistidos),
            topic_dlq=env.text("KAFKA_TOPIC_DLQ", cls.topic_dlq),
            partitions=env.integer("KAFKA_TOPIC_PARTITIONS", cls.partitions, minimum=1),
            replication_factor=env.integer(
                "KAFKA_TOPIC_REPLICATION_FACTOR", cls.replication_factor, minimum=1
            ),
            min_insync_replicas=env.integer(
                "KAFKA_TOPIC_MIN_INSYNC_REPLICAS", cls.min_insync_replicas, minimum=1
            ),
        )

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic_cadastro, self.topic_persistidos, self.topic_dlq)


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
