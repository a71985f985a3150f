"""What the benchmark reads of the project's settings: the same files the services read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from services.api.config import ApiConfig
from services.common.config import KafkaConfig
from services.scheduler.config import SchedulerConfig

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".run"
RESULTS_DIR = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"


def environment() -> dict[str, str]:
    """.env.example, then .env, then the process environment: the services' precedence
    (``make up`` copies .env.example to .env, python-dotenv never overrides the environment)."""
    merged: dict[str, str] = {}
    for source in (dotenv_values(ROOT / ".env.example"), dotenv_values(ROOT / ".env"), os.environ):
        merged.update({key: value for key, value in source.items() if value is not None})
    return merged


@dataclass(frozen=True)
class Settings:
    api: ApiConfig
    scheduler: SchedulerConfig
    reported: dict[str, str] = field(default_factory=dict)

    @property
    def kafka(self) -> KafkaConfig:
        return self.scheduler.kafka

    @property
    def token(self) -> str:
        return self.scheduler.api_token

    @property
    def batch_size(self) -> int:
        return self.scheduler.batch_size

    @property
    def api_url(self) -> str:
        return f"http://localhost:{self.api.port}"

    @property
    def scheduler_url(self) -> str:
        return f"http://localhost:{self.scheduler.port}"

    @classmethod
    def load(cls) -> Settings:
        env = environment()
        api = ApiConfig.from_env(env)
        scheduler = SchedulerConfig.from_env(env)
        # The settings that shape the figures, as the services read them (defaults included).
        reported = {
            "SCHEDULER_BATCH_SIZE": str(scheduler.batch_size),
            "SCHEDULER_IN_FLIGHT_BATCHES": str(scheduler.in_flight_batches),
            "SCHEDULER_REQUEST_TIMEOUT": str(scheduler.request_timeout),
            "OUTBOX_BATCH_SIZE": str(api.outbox_batch_size),
            "OUTBOX_POLL_INTERVAL": str(api.outbox_poll_interval),
            "DATABASE_POOL_SIZE": str(api.database_pool_size),
            "KAFKA_TOPIC_PARTITIONS": str(scheduler.kafka.partitions),
            "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        }
        return cls(api=api, scheduler=scheduler, reported=reported)
