"""Settings: frozen dataclasses built from an environment mapping, naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from services.api.config import ApiConfig
from services.common.config import ConfigError, KafkaConfig, RetryConfig, local_environ
from services.scheduler.config import SchedulerConfig

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
TOKEN = "tok-3f9a7c1e-never-logged"
DATABASE_URL = "postgresql://fluxo:pa55-never-logged@db.internal:5432/fluxo"
REQUIRED = {"API_TOKEN": TOKEN, "DATABASE_URL": DATABASE_URL}


def env_example() -> dict[str, str]:
    return {key: value for key, value in dotenv_values(ENV_EXAMPLE).items() if value is not None}


def test_the_api_defaults_are_the_values_of_env_example() -> None:
    example = env_example()

    config = ApiConfig.from_env(example)

    assert config == ApiConfig(api_token=example["API_TOKEN"], database_url=example["DATABASE_URL"])


def test_the_scheduler_defaults_are_the_values_of_env_example() -> None:
    example = env_example()

    config = SchedulerConfig.from_env(example)

    assert config == SchedulerConfig(api_token=example["API_TOKEN"])


def test_only_the_required_variables_give_the_defaults() -> None:
    assert ApiConfig.from_env(REQUIRED) == ApiConfig(api_token=TOKEN, database_url=DATABASE_URL)
    assert SchedulerConfig.from_env({"API_TOKEN": TOKEN}) == SchedulerConfig(api_token=TOKEN)


def test_every_api_setting_is_read_from_its_variable() -> None:
    config = ApiConfig.from_env(
        {
            **REQUIRED,
            "API_PORT": "9000",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
            "KAFKA_TOPIC_CADASTRO_PRODUTO": "entrada",
            "KAFKA_TOPIC_PRODUTOS_PERSISTIDOS": "saida",
            "KAFKA_TOPIC_DLQ": "entrada.dlq",
            "KAFKA_TOPIC_PARTITIONS": "12",
            "KAFKA_TOPIC_REPLICATION_FACTOR": "3",
            "RETRY_INITIAL_DELAY": "0.5",
            "RETRY_MAX_DELAY": "30",
            "DATABASE_POOL_SIZE": "20",
            "API_MAX_BODY_BYTES": "1048576",
            "OUTBOX_BATCH_SIZE": "250",
            "OUTBOX_POLL_INTERVAL": "0.25",
        }
    )

    assert config == ApiConfig(
        api_token=TOKEN,
        database_url=DATABASE_URL,
        port=9000,
        kafka=KafkaConfig(
            bootstrap_servers="kafka-1:9092,kafka-2:9092",
            topic_cadastro="entrada",
            topic_persistidos="saida",
            topic_dlq="entrada.dlq",
            partitions=12,
            replication_factor=3,
        ),
        retry=RetryConfig(initial_delay=0.5, max_delay=30.0),
        database_pool_size=20,
        max_body_bytes=1048576,
        outbox_batch_size=250,
        outbox_poll_interval=0.25,
    )


def test_every_scheduler_setting_is_read_from_its_variable() -> None:
    config = SchedulerConfig.from_env(
        {
            "API_TOKEN": TOKEN,
            "SCHEDULER_PORT": "9010",
            "API_URL": "http://api:8000/",
            "KAFKA_TOPIC_PARTITIONS": "3",
            "KAFKA_CONSUMER_GROUP": "grupo",
            "SCHEDULER_BATCH_SIZE": "100",
            "SCHEDULER_IN_FLIGHT_BATCHES": "4",
            "SCHEDULER_REQUEST_TIMEOUT": "2.5",
            "SCHEDULER_STALL_TIMEOUT": "12",
            "RETRY_MAX_DELAY": "1",
        }
    )

    assert config == SchedulerConfig(
        api_token=TOKEN,
        port=9010,
        api_url="http://api:8000",
        kafka=KafkaConfig(partitions=3),
        retry=RetryConfig(max_delay=1.0),
        consumer_group="grupo",
        batch_size=100,
        in_flight_batches=4,
        request_timeout=2.5,
        stall_timeout=12.0,
    )


def test_an_empty_variable_counts_as_unset() -> None:
    config = SchedulerConfig.from_env({"API_TOKEN": TOKEN, "SCHEDULER_PORT": "", "API_URL": ""})

    assert (config.port, config.api_url) == (8010, "http://localhost:8000")


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DATABASE_URL": DATABASE_URL}, "API_TOKEN"),
        ({"API_TOKEN": "", "DATABASE_URL": DATABASE_URL}, "API_TOKEN"),
        ({"API_TOKEN": TOKEN}, "DATABASE_URL"),
        ({"API_TOKEN": TOKEN, "DATABASE_URL": ""}, "DATABASE_URL"),
    ],
)
def test_the_api_names_a_missing_required_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable} is required$"):
        ApiConfig.from_env(environ)


@pytest.mark.parametrize("environ", [{}, {"API_TOKEN": ""}])
def test_the_scheduler_names_a_missing_token(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"^API_TOKEN is required$"):
        SchedulerConfig.from_env(environ)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_PORT", "eighty"),
        ("API_PORT", "8000.0"),
        ("API_PORT", "0"),
        ("API_PORT", "-1"),
        ("API_PORT", "65536"),
        ("KAFKA_TOPIC_PARTITIONS", "0"),
        ("KAFKA_TOPIC_PARTITIONS", "six"),
        ("KAFKA_TOPIC_REPLICATION_FACTOR", "0"),
        ("DATABASE_POOL_SIZE", "0"),
        ("API_MAX_BODY_BYTES", "1023"),
        ("OUTBOX_POLL_INTERVAL", "soon"),
        ("RETRY_INITIAL_DELAY", "0"),
        ("RETRY_MAX_DELAY", "-5"),
    ],
)
def test_the_api_names_a_malformed_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable} must be "):
        ApiConfig.from_env({**REQUIRED, variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCHEDULER_PORT", "8010.5"),
        ("SCHEDULER_PORT", "http"),
        ("SCHEDULER_PORT", "70000"),
        ("SCHEDULER_BATCH_SIZE", "0"),
        ("SCHEDULER_IN_FLIGHT_BATCHES", "0"),
        ("SCHEDULER_REQUEST_TIMEOUT", "0.01"),
        ("KAFKA_TOPIC_PARTITIONS", "0"),
        ("KAFKA_TOPIC_PARTITIONS", "-3"),
    ],
)
def test_the_scheduler_names_a_malformed_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable} must be "):
        SchedulerConfig.from_env({"API_TOKEN": TOKEN, variable: value})


def test_a_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_the_token_and_the_database_url_never_appear_in_the_api_configs_repr() -> None:
    text = repr(ApiConfig.from_env(REQUIRED))

    assert TOKEN not in text
    assert DATABASE_URL not in text
    assert "pa55-never-logged" not in text
    assert "port=8000" in text  # the rest is still shown


def test_the_token_never_appears_in_the_scheduler_configs_repr() -> None:
    text = repr(SchedulerConfig.from_env({"API_TOKEN": TOKEN}))

    assert TOKEN not in text
    assert "api_url='http://localhost:8000'" in text


def test_a_config_is_frozen() -> None:
    config = SchedulerConfig.from_env({"API_TOKEN": TOKEN})

    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "variable", ["RETRY_INITIAL_DELAY", "RETRY_MAX_DELAY", "SCHEDULER_REQUEST_TIMEOUT"]
)
def test_a_number_that_is_not_a_number_is_named(variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable} must be "):
        SchedulerConfig.from_env({"API_TOKEN": TOKEN, variable: "nan"})


def test_a_local_run_reads_env_example_then_env_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env.example").write_text("A=example\nB=example\nC=example\n")
    (tmp_path / ".env").write_text("B=dotenv\nC=dotenv\n")
    monkeypatch.setenv("C", "environment")

    environ = local_environ(tmp_path)

    assert (environ["A"], environ["B"], environ["C"]) == ("example", "dotenv", "environment")
