"""Settings: frozen dataclasses built from an environment mapping, naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from services.api.config import ApiConfig, database_url
from services.common.config import (
    ConfigError,
    Env,
    HttpConfig,
    KafkaConfig,
    RetryConfig,
    local_environ,
)
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

    assert config == ApiConfig(
        api_tokens=(example["API_TOKEN"],),
        database_url=example["DATABASE_URL"] + "?sslmode=disable",
    )


def test_the_scheduler_defaults_are_the_values_of_env_example() -> None:
    example = env_example()

    config = SchedulerConfig.from_env(example)

    assert config == SchedulerConfig(api_tokens=(example["API_TOKEN"],))


def test_only_the_required_variables_give_the_defaults() -> None:
    assert ApiConfig.from_env(REQUIRED) == ApiConfig(api_tokens=(TOKEN,), database_url=DATABASE_URL)
    assert SchedulerConfig.from_env({"API_TOKEN": TOKEN}) == SchedulerConfig(api_tokens=(TOKEN,))


def test_every_api_setting_is_read_from_its_variable() -> None:
    config = ApiConfig.from_env(
        {
            **REQUIRED,
            "API_PORT": "9000",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
            "KAFKA_TOPIC_CADASTRO_PRODUTO": "entrada",
            "KAFKA_TOPIC_PRODUTOS_PERSISTIDOS": "saida",
            "KAFKA_TOPIC_DLQ": "entrada.dlq",
            "KAFKA_TOPIC_DLQ_REDRIVES": "entrada.redrives",
            "KAFKA_TOPIC_PARTITIONS": "12",
            "KAFKA_TOPIC_REPLICATION_FACTOR": "3",
            "KAFKA_TOPIC_MIN_INSYNC_REPLICAS": "2",
            "RETRY_INITIAL_DELAY": "0.5",
            "RETRY_MAX_DELAY": "30",
            "DATABASE_POOL_SIZE": "20",
            "API_MAX_BODY_BYTES": "1048576",
            "OUTBOX_BATCH_SIZE": "250",
            "OUTBOX_POLL_INTERVAL": "0.25",
            "HTTP_HEADER_TIMEOUT_SECONDS": "5",
            "HTTP_BODY_TIMEOUT_SECONDS": "20.5",
            "HTTP_KEEPALIVE_TIMEOUT_SECONDS": "120",
            "HTTP_MAX_CONNECTIONS": "4000",
            "FUTURE_TIMESTAMP_TOLERANCE_SECONDS": "5",
        }
    )

    assert config == ApiConfig(
        api_tokens=(TOKEN,),
        database_url=DATABASE_URL,
        port=9000,
        kafka=KafkaConfig(
            bootstrap_servers="kafka-1:9092,kafka-2:9092",
            topic_cadastro="entrada",
            topic_persistidos="saida",
            topic_dlq="entrada.dlq",
            topic_dlq_redrives="entrada.redrives",
            partitions=12,
            replication_factor=3,
            min_insync_replicas=2,
        ),
        retry=RetryConfig(initial_delay=0.5, max_delay=30.0),
        http=HttpConfig(
            header_timeout=5.0, body_timeout=20.5, keepalive_timeout=120.0, max_connections=4000
        ),
        database_pool_size=20,
        max_body_bytes=1048576,
        outbox_batch_size=250,
        outbox_poll_interval=0.25,
        future_timestamp_tolerance=5.0,
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
            "SCHEDULER_COMMIT_INTERVAL": "0",
            "SCHEDULER_FETCH_MAX_WAIT_MS": "100",
            "SCHEDULER_FETCH_MIN_BYTES": "1",
            "SCHEDULER_STALL_TIMEOUT": "12",
            "RETRY_MAX_DELAY": "1",
            "HTTP_MAX_CONNECTIONS": "50",
            "FUTURE_TIMESTAMP_TOLERANCE_SECONDS": "0.5",
            "SCHEDULER_REDRIVE_CLAIM_SECONDS": "5",
        }
    )

    assert config == SchedulerConfig(
        api_tokens=(TOKEN,),
        port=9010,
        api_url="http://api:8000",
        kafka=KafkaConfig(partitions=3),
        retry=RetryConfig(max_delay=1.0),
        http=HttpConfig(max_connections=50),
        consumer_group="grupo",
        batch_size=100,
        in_flight_batches=4,
        request_timeout=2.5,
        commit_interval=0.0,
        fetch_max_wait_ms=100,
        fetch_min_bytes=1,
        stall_timeout=12.0,
        future_timestamp_tolerance=0.5,
        redrive_claim_seconds=5.0,
    )


def test_api_url_may_list_several_replicas_separated_by_commas() -> None:
    config = SchedulerConfig.from_env(
        {"API_TOKEN": TOKEN, "API_URL": "http://api-1:8000/, http://api-2:8000"}
    )

    assert config.api_urls == ("http://api-1:8000", "http://api-2:8000")
    assert SchedulerConfig.from_env({"API_TOKEN": TOKEN}).api_urls == ("http://localhost:8000",)


@pytest.mark.parametrize("value", ["http://api-1:8000,", "api-1:8000", "http://a:1,,http://b:2"])
def test_an_api_url_list_with_a_blank_or_schemeless_entry_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^API_URL must list http"):
        SchedulerConfig.from_env({"API_TOKEN": TOKEN, "API_URL": value})


def test_an_empty_variable_counts_as_unset() -> None:
    config = SchedulerConfig.from_env({"API_TOKEN": TOKEN, "SCHEDULER_PORT": "", "API_URL": ""})

    assert (config.port, config.api_url) == (8010, "http://localhost:8000")


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DATABASE_URL": DATABASE_URL}, r"API_TOKENS \(or API_TOKEN\)"),
        ({"API_TOKEN": "", "DATABASE_URL": DATABASE_URL}, r"API_TOKENS \(or API_TOKEN\)"),
        ({"API_TOKENS": " , ", "DATABASE_URL": DATABASE_URL}, r"API_TOKENS \(or API_TOKEN\)"),
        ({"API_TOKEN": TOKEN}, "DATABASE_URL"),
        ({"API_TOKEN": TOKEN, "DATABASE_URL": ""}, "DATABASE_URL"),
    ],
)
def test_the_api_names_a_missing_required_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable} is required$"):
        ApiConfig.from_env(environ)


@pytest.mark.parametrize("environ", [{}, {"API_TOKEN": ""}, {"API_TOKENS": ""}])
def test_the_scheduler_names_a_missing_token(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"^API_TOKENS \(or API_TOKEN\) is required$"):
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
        ("HTTP_HEADER_TIMEOUT_SECONDS", "0"),
        ("HTTP_BODY_TIMEOUT_SECONDS", "never"),
        ("HTTP_KEEPALIVE_TIMEOUT_SECONDS", "-1"),
        ("HTTP_MAX_CONNECTIONS", "0"),
        ("FUTURE_TIMESTAMP_TOLERANCE_SECONDS", "-1"),
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
        ("SCHEDULER_COMMIT_INTERVAL", "-1"),
        ("SCHEDULER_FETCH_MAX_WAIT_MS", "10001"),
        ("SCHEDULER_FETCH_MIN_BYTES", "0"),
        ("KAFKA_TOPIC_PARTITIONS", "0"),
        ("KAFKA_TOPIC_PARTITIONS", "-3"),
        ("HTTP_MAX_CONNECTIONS", "many"),
        ("FUTURE_TIMESTAMP_TOLERANCE_SECONDS", "a minute"),
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


def test_several_tokens_are_accepted_at_once_and_the_first_is_sent() -> None:
    environ = {"API_TOKENS": " new-token , old-token ", "API_TOKEN": "ignored", "API_URL": ""}

    assert ApiConfig.from_env({**environ, "DATABASE_URL": DATABASE_URL}).api_tokens == (
        "new-token",
        "old-token",
    )
    assert SchedulerConfig.from_env(environ).api_tokens == ("new-token", "old-token")


@pytest.mark.parametrize("bad", ["with space", 'quote"d', "new\nline", "ã-accent"])
def test_a_token_that_cannot_travel_in_a_header_is_named_by_position_not_shown(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^API_TOKENS: token 2 may only contain") as raised:
        SchedulerConfig.from_env({"API_TOKENS": f"good,{bad}"})

    assert bad not in str(raised.value)


def test_kafka_transport_security_is_read_from_its_variables(tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_text("not parsed here")

    config = KafkaConfig.from_env(
        Env(
            {
                "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "KAFKA_SASL_USERNAME": "fluxo",
                "KAFKA_SASL_PASSWORD": "kafka-pa55-never-logged",
                "KAFKA_SSL_CAFILE": str(cafile),
            }
        )
    )

    assert config == KafkaConfig(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="fluxo",
        sasl_password="kafka-pa55-never-logged",
        ssl_cafile=str(cafile),
    )
    assert (config.uses_ssl, config.uses_sasl) == (True, True)
    assert "kafka-pa55-never-logged" not in repr(config)


def test_kafka_is_plain_without_settings() -> None:
    config = KafkaConfig.from_env(Env({}))

    assert (config.security_protocol, config.uses_ssl, config.uses_sasl) == (
        "PLAINTEXT",
        False,
        False,
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "^KAFKA_SECURITY_PROTOCOL must be one of"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "^KAFKA_SASL_MECHANISM must be one of",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "^KAFKA_SASL_USERNAME is required$"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "fluxo"},
            "^KAFKA_SASL_PASSWORD is required$",
        ),
        ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "^KAFKA_SSL_CAFILE must be a readable"),
    ],
)
def test_a_wrong_kafka_security_setting_is_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KafkaConfig.from_env(Env(environ))


@pytest.mark.parametrize(
    ("url", "environ", "expected"),
    [
        (
            "postgresql://u:p@localhost:5432/db",
            {},
            "postgresql://u:p@localhost:5432/db?sslmode=disable",
        ),
        (
            "postgresql://u:p@127.0.0.1/db?application_name=api",
            {},
            "postgresql://u:p@127.0.0.1/db?application_name=api&sslmode=disable",
        ),
        ("postgresql://u:p@[::1]:5432/db", {}, "postgresql://u:p@[::1]:5432/db?sslmode=disable"),
        # A remote server keeps asyncpg's default (TLS when the server offers it) ...
        ("postgresql://u:p@db.internal/db", {}, "postgresql://u:p@db.internal/db"),
        # ... and what the URL or PGSSLMODE asks for is kept.
        (
            "postgresql://u:p@localhost/db?sslmode=verify-full&sslrootcert=/ca.pem",
            {},
            "postgresql://u:p@localhost/db?sslmode=verify-full&sslrootcert=/ca.pem",
        ),
        (
            "postgresql://u:p@localhost/db",
            {"PGSSLMODE": "require"},
            "postgresql://u:p@localhost/db",
        ),
        ("postgresql://u:p@h1:5432,h2:5432/db", {}, "postgresql://u:p@h1:5432,h2:5432/db"),
    ],
)
def test_the_database_is_reached_in_plain_on_loopback_unless_tls_is_asked_for(
    url: str, environ: dict[str, str], expected: str
) -> None:
    assert database_url(url, environ) == expected


def test_an_unknown_sslmode_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL's sslmode must be one of"):
        ApiConfig.from_env({**REQUIRED, "DATABASE_URL": DATABASE_URL + "?sslmode=on"})


def test_no_secret_appears_in_the_repr_of_either_config() -> None:
    secrets = {
        "API_TOKENS": "first-secret-token,second-secret-token",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "fluxo",
        "KAFKA_SASL_PASSWORD": "kafka-secret-password",
    }
    for config in (
        ApiConfig.from_env({**secrets, "DATABASE_URL": DATABASE_URL}),
        SchedulerConfig.from_env(secrets),
    ):
        text = repr(config)

        for secret in ("first-secret-token", "second-secret-token", "kafka-secret-password"):
            assert secret not in text
        assert "sasl_username='fluxo'" in text
