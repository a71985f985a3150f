"""Settings of the scheduler service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class SchedulerConfig:
    # Accepted on the scheduler's own endpoints; the first is sent to the API.
    api_tokens: tuple[str, ...] = field(repr=False)
    port: int = 8010
    # One API URL, or several separated by commas (replicas the scheduler spreads over).
    api_url: str = "http://localhost:8000"
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    consumer_group: str = "fluxo-scheduler"
    batch_size: int = 500
    # Batches at the API at once: while one is validated, others wait on PostgreSQL or are
    # on the way (at full speed, 3 kept the API busier than 2; 4 gained nothing more).
    in_flight_batches: int = 3
    request_timeout: float = 10.0
    # Offsets of acknowledged batches are committed at most this often (and at once on
    # shutdown, rebalance and replay); 0 commits after every batch. A crash delivers again
    # what was acknowledged since the last commit (at-least-once; the upsert is idempotent).
    commit_interval: float = 1.0
    # The broker answers a fetch once it holds fetch_min_bytes for us, or after
    # fetch_max_wait_ms: at low rates, fuller batches and a fetch every 15 ms instead of
    # one per batch the producers sent (a third of the API requests at 1,000 records/s).
    # The CPU a batch costs, in every process, against 7.5 ms of latency on average.
    fetch_max_wait_ms: int = 15
    fetch_min_bytes: int = 64 * 1024
    # How long SIGTERM waits for the batch in flight before giving it up (uncommitted,
    # so it is delivered again).
    shutdown_timeout: float = 15.0
    # No record fetched for this long while records wait: the consumer is restarted.
    stall_timeout: float = 30.0
    # Seconds a record's timestamp may be ahead of this server's clock; a record stamped
    # further ahead is dead-lettered (stage validate).
    future_timestamp_tolerance: float = FUTURE_TIMESTAMP_TOLERANCE
    # A re-drive's claim on a dead letter's attempt is held this long: a claimer that dies
    # before producing frees the attempt after it (docs/dead-letters.md).
    redrive_claim_seconds: float = 30.0

    @property
    def api_urls(self) -> tuple[str, ...]:
        return api_urls(self.api_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SchedulerConfig:
        env = Env(environ)
        return cls(
            api_tokens=api_tokens(env),
            port=env.port("SCHEDULER_PORT", cls.port),
            api_url=",".join(api_urls(env.text("API_URL", cls.api_url))),
            kafka=KafkaConfig.from_env(env),
            retry=RetryConfig.from_env(env),
            http=HttpConfig.from_env(env),
            consumer_group=env.text("KAFKA_CONSUMER_GROUP", cls.consumer_group),
            batch_size=env.integer("SCHEDULER_BATCH_SIZE", cls.batch_size, minimum=1),
            in_flight_batches=env.integer(
                "SCHEDULER_IN_FLIGHT_BATCHES", cls.in_flight_batches, minimum=1
            ),
            request_timeout=env.number(
                "SCHEDULER_REQUEST_TIMEOUT", cls.request_timeout, minimum=0.1
            ),
            commit_interval=env.number("SCHEDULER_COMMIT_INTERVAL", cls.commit_interval),
            fetch_max_wait_ms=env.integer(
                "SCHEDULER_FETCH_MAX_WAIT_MS", cls.fetch_max_wait_ms, maximum=10_000
            ),
            fetch_min_bytes=env.integer(
                "SCHEDULER_FETCH_MIN_BYTES", cls.fetch_min_bytes, minimum=1
            ),
            stall_timeout=env.number("SCHEDULER_STALL_TIMEOUT", cls.stall_timeout, minimum=1),
            future_timestamp_tolerance=future_timestamp_tolerance(env),
            redrive_claim_seconds=env.number(
                "SCHEDULER_REDRIVE_CLAIM_SECONDS", cls.redrive_claim_seconds, minimum=1
            ),
        )


def api_urls(setting: str) -> tuple[str, ...]:
    """The URLs of a comma-separated ``API_URL``, without trailing slashes."""
    urls = tuple(url.strip().rstrip("/") for url in setting.split(","))
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"API_URL must list http:// or https:// URLs, got {url!r}")
    return urls
