"""Settings of the API service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..common.config import Env, KafkaConfig, RetryConfig

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@dataclass(frozen=True)
class ApiConfig:
    api_token: str = field(repr=False)
    database_url: str = field(repr=False)
    port: int = 8000
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    database_pool_size: int = 10
    max_body_bytes: int = 8 * 1024 * 1024
    outbox_batch_size: int = 1000
    outbox_poll_interval: float = 1.0
    sql_dir: Path = SQL_DIR

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiConfig:
        env = Env(environ)
        return cls(
            api_token=env.text("API_TOKEN"),
            database_url=env.text("DATABASE_URL"),
            port=env.port("API_PORT", cls.port),
            kafka=KafkaConfig.from_env(env),
            retry=RetryConfig.from_env(env),
            database_pool_size=env.integer("DATABASE_POOL_SIZE", cls.database_pool_size, minimum=1),
            max_body_bytes=env.integer("API_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024),
            outbox_batch_size=env.integer("OUTBOX_BATCH_SIZE", cls.outbox_batch_size, minimum=1),
            outbox_poll_interval=env.number(
                "OUTBOX_POLL_INTERVAL", cls.outbox_poll_interval, minimum=0.01
            ),
        )
