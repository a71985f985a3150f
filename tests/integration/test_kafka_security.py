"""The pipeline on a Kafka cluster that requires TLS, SCRAM-SHA-512 and ACLs.

The module starts one broker of its own (the jars of scripts/kafka.sh) with a single
SASL_SSL listener, a certificate signed by a CA the test makes, SCRAM credentials created
when the storage is formatted, and the StandardAuthorizer denying whatever no ACL allows.
The services are configured through the ``KAFKA_*`` variables alone.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
)
from aiokafka.protocol.admin import CreateAclsRequest

from services.api.config import ApiConfig
from services.common.config import Env, KafkaConfig
from services.common.kafka import client_settings
from services.scheduler.config import SchedulerConfig

from ..helpers import ROOT, auth, eventually, free_ports, manual_record, persisted, unique
from ..reliability.harness import tail
from ..tls import make_certificates

Client = TestClient[web.Request, web.Application]

ADMIN = ("admin", "admin-secret")
PIPELINE = ("fluxo", "fluxo-secret")
# Valid credentials, but no ACL on the scheduler's group.
INTRUDER = ("intruder", "intruder-secret")
# The names the test fixtures give (helpers.isolated_kafka, conftest's scheduler_config).
TOPIC_PREFIX = "t-"
GROUP_PREFIX = "group-"

# Kafka protocol codes of CreateAcls.
TOPIC, GROUP, CLUSTER = 2, 3, 4
LITERAL, PREFIXED = 3, 4
READ, WRITE, CREATE, DESCRIBE, IDEMPOTENT_WRITE = 3, 4, 5, 8, 12
ALLOW = 3

PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:{controller_port}
listeners=SASL_SSL://localhost:{port},CONTROLLER://localhost:{controller_port}
advertised.listeners=SASL_SSL://localhost:{port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_SSL
controller.listener.names=CONTROLLER
log.dirs={data}

# Clients: SCRAM-SHA-512 over TLS. The broker talks to itself the same way, as the admin.
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required \
username="{admin}" password="{admin_password}";
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}

# The controller listener (loopback, this process only) authenticates with PLAIN: SCRAM
# credentials live in the metadata log, which the controller serves.
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required \
username="{admin}" password="{admin_password}" user_{admin}="{admin_password}";

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{admin}
allow.everyone.if.no.acl.found=false

auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=16777216
"""


@dataclass(frozen=True)
class SecuredBroker:
    bootstrap: str
    ca: Path
    log: Path

    def environ(self, credentials: tuple[str, str]) -> dict[str, str]:
        """What an operator sets for the services, and nothing else."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": credentials[0],
            "KAFKA_SASL_PASSWORD": credentials[1],
            "KAFKA_SSL_CAFILE": str(self.ca),
        }

    def config(self, credentials: tuple[str, str]) -> KafkaConfig:
        return KafkaConfig.from_env(Env(self.environ(credentials)))


def _java(classpath: str, *args: str) -> list[str]:
    return [
        "java",
        "-Xms256m",
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={ROOT / 'scripts' / 'kafka' / 'log4j2.properties'}",
        "-cp",
        classpath,
        *args,
    ]


async def _create_acls(broker: SecuredBroker) -> None:
    """Let the pipeline's user use the test topics and the scheduler's groups; no one else."""
    user = f"User:{PIPELINE[0]}"
    grants = [
        *((TOPIC, TOPIC_PREFIX, PREFIXED, op) for op in (READ, WRITE, CREATE, DESCRIBE)),
        (GROUP, GROUP_PREFIX, PREFIXED, READ),
        (CLUSTER, "kafka-cluster", LITERAL, IDEMPOTENT_WRITE),
        # The intruder may read the topics, but joins no group.
        (TOPIC, TOPIC_PREFIX, PREFIXED, READ, f"User:{INTRUDER[0]}"),
    ]
    admin = AIOKafkaAdminClient(**client_settings(broker.config(ADMIN)))
    await admin.start()
    try:
        for resource, name, pattern, operation, *principal in grants:
            request = CreateAclsRequest(
                resource, name, pattern, principal[0] if principal else user, "*", operation, ALLOW
            )
            response = await admin._send_request(request)
            assert [error for error, _ in response.creation_responses] == [0], response
    finally:
        await admin.close()


async def _wait_ready(broker: SecuredBroker, process: subprocess.Popen[bytes]) -> None:
    async def answers() -> bool:
        assert process.poll() is None, f"the broker exited:\n{tail(broker.log)}"
        admin = AIOKafkaAdminClient(
            **client_settings(broker.config(ADMIN)), request_timeout_ms=3000
        )
        try:
            await admin.start()
            return bool(await admin.describe_cluster())
        except KafkaError:
            return False
        finally:
            await admin.close()

    await eventually(
        answers,
        within=90,
        what="the SASL_SSL broker answering",
        every=0.5,
        context=lambda: tail(broker.log),
    )


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    # The jars of scripts/kafka.sh, fetched if this machine has none yet.
    classpath = subprocess.run(
        [str(ROOT / "scripts" / "kafka.sh"), "classpath"],
        check=True,
        timeout=600,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()
    directory = tmp_path_factory.mktemp("kafka-sasl-ssl")
    certificates = make_certificates(directory / "tls")
    port, controller_port = free_ports(), free_ports()
    broker = SecuredBroker(f"localhost:{port}", certificates.ca, directory / "kafka.log")
    properties = directory / "server.properties"
    properties.write_text(
        PROPERTIES.format(
            port=port,
            controller_port=controller_port,
            data=directory / "data",
            keystore=certificates.keystore(),
            ca=certificates.ca,
            admin=ADMIN[0],
            admin_password=ADMIN[1],
        )
    )
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    scram = [
        f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]"
        for name, password in (ADMIN, PIPELINE, INTRUDER)
    ]
    with broker.log.open("ab") as log:
        subprocess.run(
            _java(
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(properties),
                "--standalone",
                *scram,
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=120,
        )
        process = subprocess.Popen(
            _java(classpath, "kafka.Kafka", str(properties)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        asyncio.run(_wait_ready(broker, process))
        asyncio.run(_create_acls(broker))
        yield broker
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def kafka(secured_broker: SecuredBroker) -> KafkaConfig:
    """The test's own topics on the secured broker, reached as the pipeline's user."""
    run = unique("t")
    assert run.startswith(TOPIC_PREFIX)
    return dataclasses.replace(
        secured_broker.config(PIPELINE),
        topic_cadastro=f"{run}.cadastro-produtos",
        topic_persistidos=f"{run}.produtos-persistidos",
        topic_dlq=f"{run}.cadastro-produtos.dlq",
        topic_dlq_redrives=f"{run}.cadastro-produtos.dlq.redrives",
        partitions=3,
    )


@pytest.fixture
async def persisted_reader(kafka: KafkaConfig) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        kafka.topic_persistidos,
        **client_settings(kafka),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    yield consumer
    await consumer.stop()


async def test_the_pipeline_flows_through_sasl_ssl_with_the_configured_credentials(
    kafka: KafkaConfig,
    api: Client,
    api_config: ApiConfig,
    scheduler: Client,
    persisted_reader: AIOKafkaConsumer,
) -> None:
    assert (kafka.security_protocol, kafka.sasl_username) == ("SASL_SSL", PIPELINE[0])
    record = manual_record(unique("sasl"))

    response = await api.post("/produto/manual", json=record, headers=auth())
    assert response.status == 202, await response.text()

    await eventually(
        lambda: persisted(api_config.database_url, record["productId"]),
        within=30,
        what="the record reaching PostgreSQL through the secured broker",
    )
    published = await asyncio.wait_for(persisted_reader.getone(), timeout=30)
    assert published.key == record["productId"].encode()


@pytest.mark.parametrize(
    "credentials",
    [INTRUDER, (PIPELINE[0], "a-wrong-password"), None],
    ids=["authenticated-without-acl", "wrong-password", "no-credentials"],
)
async def test_a_client_without_the_pipelines_credentials_cannot_join_the_schedulers_group(
    secured_broker: SecuredBroker,
    kafka: KafkaConfig,
    scheduler: Client,
    scheduler_config: SchedulerConfig,
    credentials: tuple[str, str] | None,
) -> None:
    if credentials is None:  # TLS, but no SASL handshake: the broker closes the connection
        settings = client_settings(dataclasses.replace(kafka, security_protocol="SSL"))
    else:
        settings = client_settings(secured_broker.config(credentials))
    consumer = AIOKafkaConsumer(
        kafka.topic_cadastro,
        **settings,
        group_id=scheduler_config.consumer_group,
        request_timeout_ms=5000,
        enable_auto_commit=False,
    )
    expected = GroupAuthorizationFailedError if credentials == INTRUDER else KafkaConnectionError
    try:
        with pytest.raises(expected):
            await consumer.start()
            await asyncio.wait_for(consumer.getone(), timeout=15)
    finally:
        await consumer.stop()
