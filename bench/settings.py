"""What the benchmark reads of the project's settings: the same files the services read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.api.config import ApiConfig
from services.common.config import KafkaConfig, local_environ
from services.scheduler.config import SchedulerConfig

ROOT = Path(__file__).resolve().parents[1]
# Where `make up` keeps the pids; FLUXO_RUN_DIR names another, as for scripts/lib.sh.
RUN_DIR = Path(os.environ.get("FLUXO_RUN_DIR") or ROOT / ".run")
# Recorded runs (``--record``), committed with the README's table.
RESULTS_DIR = ROOT / "bench" / "results"
# Every other run's files: ignored by git, so a run leaves the work tree as it was.
OUTPUT_DIR = ROOT / ".run" / "bench"
README = ROOT / "bench" / "README.md"


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
        return self.scheduler.api_tokens[0]

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
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The project's settings (``.env``, the environment), or those of ``env``."""
        env = local_environ(ROOT) if env is None else env
        api = ApiConfig.from_env(env)
        scheduler = SchedulerConfig.from_env(env)
        # The settings that shape the figures, as the services read them (defaults included).
        reported = {
            "SCHEDULER_BATCH_SIZE": str(scheduler.batch_size),
            "SCHEDULER_IN_FLIGHT_BATCHES": str(scheduler.in_flight_batches),
            "SCHEDULER_REQUEST_TIMEOUT": str(scheduler.request_timeout),
            "SCHEDULER_COMMIT_INTERVAL": str(scheduler.commit_interval),
            "SCHEDULER_FETCH_MAX_WAIT_MS": str(scheduler.fetch_max_wait_ms),
            "SCHEDULER_FETCH_MIN_BYTES": str(scheduler.fetch_min_bytes),
            "OUTBOX_BATCH_SIZE": str(api.outbox_batch_size),
            "OUTBOX_POLL_INTERVAL": str(api.outbox_poll_interval),
            "DATABASE_POOL_SIZE": str(api.database_pool_size),
            "KAFKA_TOPIC_PARTITIONS": str(scheduler.kafka.partitions),
            "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        }
        return cls(api=api, scheduler=scheduler, reported=reported)
