"""A three-node Kafka cluster loses the broker that leads the busiest partitions mid-stream.

The cluster is the suite's own (scripts/kafka.sh with KAFKA_BROKERS=3, on free ports, small
heaps), started for this module only. The topics have replication factor 3 and
min.insync.replicas 2, and every producer uses acks=all: with one node down the other two
still hold every write, so nothing acknowledged is lost and the flow goes on once the
surviving nodes lead the dead one's partitions.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from aiokafka.errors import KafkaError

from ..helpers import eventually
from .conftest import open_scenario
from .harness import Cluster, Infrastructure
from .kafka_admin import PartitionState, partitions, topic_setting
from .scenario import Results

PRODUCTS = 2000
STRIKE_AT = 0.3 * PRODUCTS


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    cluster.start_afresh()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_the_broker_leading_the_busiest_partitions_killed_mid_stream_and_restarted(
    request: pytest.FixtureRequest,
    infrastructure: Infrastructure,
    results: Results,
    cluster: Cluster,
) -> None:
    async with open_scenario(
        request,
        infrastructure,
        results,
        bootstrap=cluster.bootstrap,
        partitions=6,
        replication_factor=3,
        min_insync_replicas=2,
    ) as scenario:
        topics = [scenario.kafka.topic_cadastro, scenario.kafka.topic_persistidos]

        async def described() -> list[PartitionState]:
            # A topic is known to every broker a moment after the controller created it.
            layout = await partitions(cluster.bootstrap, topics)
            return layout if len(layout) == 6 * len(topics) else []

        layout = await eventually(
            described, within=15, what="the brokers describing both topics' 6 partitions"
        )
        assert {len(p.replicas) for p in layout} == {3}, layout
        for topic in topics:
            assert await topic_setting(cluster.bootstrap, topic, "min.insync.replicas") == "2"
        rss_idle = cluster.rss_mb()
        await scenario.start_services()
        workload = scenario.workload(count=PRODUCTS)
        async with scenario.stream(workload, seconds=8).running(within=240) as stream:
            await scenario.wait_persisted(STRIKE_AT)
            leaders = {
                (p.topic, p.partition): p.leader
                for p in await partitions(cluster.bootstrap, topics)
            }
            busiest, led = Counter(leaders.values()).most_common(1)[0]
            assert any(
                topic == scenario.kafka.topic_cadastro and leader == busiest
                for (topic, _), leader in leaders.items()
            ), f"node {busiest} leads no partition of the entry topic: {leaders}"
            rss_busy = cluster.rss_mb()
            persisted_at_kill = await scenario.persisted()
            cluster.kill(busiest)
            killed = time.monotonic()

            async def leaders_moved() -> bool:
                try:
                    now = await partitions(cluster.bootstrap, topics)
                except KafkaError:  # asked the dead node; ask again
                    return False
                return all(p.leader not in (-1, busiest) for p in now)

            # The controller fences a silent broker after broker.session.timeout.ms (9 s).
            await scenario.eventually(
                leaders_moved, within=30, what=f"the survivors leading node {busiest}'s partitions"
            )
            new_leaders = time.monotonic() - killed

            async def flowing_again() -> bool:
                return await scenario.persisted() >= persisted_at_kill + 200

            await scenario.eventually(
                flowing_again,
                within=45 - new_leaders,
                what="records persisted again within 45 s of the broker's death",
            )
            flowing = time.monotonic() - killed
            await cluster.start()
            back = time.monotonic() - killed

        row = await scenario.verify(workload, stream, within=180)

    assert row.persisted == row.published == PRODUCTS
    assert row.duplicates_in_products == 0
    results.notes.append(
        f"broker failover: node {busiest} of 3 led {led} of {len(leaders)} partitions when "
        f"killed (-9) with {persisted_at_kill} of {PRODUCTS} persisted; the survivors led "
        f"them after {new_leaders:.1f} s, records flowed again after {flowing:.1f} s, the "
        f"node was back in the cluster after {back:.1f} s; producer retries during the "
        f"outage: {stream.retried}. Heap {cluster.heap_mb} MiB per node; resident memory "
        f"per node {'/'.join(f'{m:.0f}' for m in rss_idle)} MiB idle, "
        f"{'/'.join(f'{m:.0f}' for m in rss_busy)} MiB under load."
    )
