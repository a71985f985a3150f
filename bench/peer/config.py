"""The peer's configuration and the records both systems get: pure functions, unit-tested.

The peer is Kafka Connect 4.1.1 standalone with the Debezium JDBC sink (upsert into
PostgreSQL) and the Debezium PostgreSQL source (logical decoding of that table, republished
as plain JSON): the no-code way to "consume product records, upsert them, publish each
written row". Its settings are those the comparison was first measured with; change them
and the figures no longer compare with that measurement.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..records import id_prefix, product

CONNECT_HEAP = ("-Xms256m", "-Xmx1g")
SINK = "peer-sink"
SOURCE = "peer-source"
TABLE = "products"
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"

# The peer's table: the columns of fluxo-dados' products that a record carries, so that one
# query reads both systems' rows. Created before the connectors start (the source must
# publish it before the sink writes, and two sink tasks would race to create it).
PEER_TABLE_SQL = f"""
CREATE TABLE {TABLE} (
    id             text PRIMARY KEY,
    name           text NOT NULL,
    description    text NOT NULL,
    price_amount   double precision NOT NULL,
    price_currency text NOT NULL,
    stock_quantity integer NOT NULL,
    category       text NOT NULL
)
"""
ROW_COLUMNS = ("id", "name", "description", "price_amount", "price_currency", "stock_quantity")
ROWS_SQL = f"SELECT {', '.join(ROW_COLUMNS)}, category FROM {TABLE}"

# The JSON converter's schema of the peer's input (schemas.enable=true): its sink needs it.
VALUE_SCHEMA = {
    "type": "struct",
    "name": "fluxo.bench.Product",
    "optional": False,
    "fields": [
        {"field": "id", "type": "string", "optional": False},
        {"field": "name", "type": "string", "optional": False},
        {"field": "description", "type": "string", "optional": False},
        {"field": "price_amount", "type": "double", "optional": False},
        {"field": "price_currency", "type": "string", "optional": False},
        {"field": "stock_quantity", "type": "int32", "optional": False},
        {"field": "category", "type": "string", "optional": False},
    ],
}


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    name: str
    user: str
    password: str

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.name}"


def worker_properties(
    *, bootstrap: str, rest_port: int, plugin_path: str, offsets_file: str
) -> dict[str, str]:
    """The standalone worker's ``connect-standalone.properties``."""
    return {
        "bootstrap.servers": bootstrap,
        "listeners": f"http://127.0.0.1:{rest_port}",
        "key.converter": STRING_CONVERTER,
        "value.converter": JSON_CONVERTER,
        "offset.storage.file.filename": offsets_file,
        "plugin.path": plugin_path,
        # Reads the plugins' ServiceLoader manifests instead of scanning every class: a
        # start of about 2 s rather than 20, and no difference once running.
        "plugin.discovery": "service_load",
        # consumer.override.* in the sink's configuration needs it.
        "connector.client.config.override.policy": "All",
    }


def sink_config(*, topic: str, database: Database) -> dict[str, str]:
    """The Debezium JDBC sink: upsert by ``id`` from records with the converter's schema."""
    return {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "2",
        "topics": topic,
        "connection.url": database.jdbc_url,
        "connection.username": database.user,
        "connection.password": database.password,
        "insert.mode": "upsert",
        "primary.key.mode": "record_value",
        "primary.key.fields": "id",
        "batch.size": "500",
        "consumer.override.max.poll.records": "500",
        "use.reduction.buffer": "false",
        "schema.evolution": "none",
        "collection.name.format": TABLE,
        "key.converter": STRING_CONVERTER,
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "true",
    }


def source_config(*, topic: str, database: Database, slot: str) -> dict[str, str]:
    """The Debezium PostgreSQL source: every row the sink writes, as plain JSON on ``topic``,
    keyed by ``id``."""
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": database.host,
        "database.port": str(database.port),
        "database.user": database.user,
        "database.password": database.password,
        "database.dbname": database.name,
        "topic.prefix": "peer",
        "table.include.list": f"public.{TABLE}",
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "no_data",
        "transforms": "unwrap,route,key",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": ".*",
        "transforms.route.replacement": topic,
        "transforms.key.type": "org.apache.kafka.connect.transforms.ExtractField$Key",
        "transforms.key.field": "id",
        "key.converter": STRING_CONVERTER,
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
    }


def properties(values: Mapping[str, str]) -> str:
    """A Java properties file (values here hold no characters that need escaping)."""
    return "".join(f"{key}={value}\n" for key, value in values.items())


# --- the workload -----------------------------------------------------------------------


def workload(run_id: str, count: int, ids: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``count`` records over ``ids`` ids, as (id number, input record): one insert of every
    id in turn, then updates of ids drawn at random among them. The same arguments give the
    same ids, values and order, whichever system they are for."""
    if not 0 < ids <= count:
        raise ValueError(f"ids must be in 1..{count}, got {ids}")
    rng = random.Random(f"peer:{run_id}")
    prefix = id_prefix(run_id)
    for n in range(count):
        number = n if n < ids else rng.randrange(ids)
        yield number, product(rng, f"{prefix}{number}")


def row(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """An input record as the columns it is stored in (``ROW_COLUMNS`` and category), price
    in cents: what both systems' rows and events are compared on."""
    return (
        record["productId"],
        record["productName"],
        record["productDescription"],
        round(record["price"] * 100),
        record["currency"],
        record["stockQuantity"],
        record["category"],
    )


def peer_value(record: Mapping[str, Any]) -> bytes:
    """The peer's input: the record in the peer's columns, in the converter's envelope."""
    payload = {
        "id": record["productId"],
        "name": record["productName"],
        "description": record["productDescription"],
        "price_amount": record["price"],
        "price_currency": record["currency"],
        "stock_quantity": record["stockQuantity"],
        "category": record["category"],
    }
    return orjson.dumps({"schema": VALUE_SCHEMA, "payload": payload})


def peer_event_row(value: Mapping[str, Any]) -> tuple[Any, ...]:
    """A peer output event (a plain row) compared as ``row`` gives it."""
    return (
        value["id"],
        value["name"],
        value["description"],
        round(value["price_amount"] * 100),
        value["price_currency"],
        value["stock_quantity"],
        value["category"],
    )


def fluxo_event_row(value: Mapping[str, Any]) -> tuple[Any, ...]:
    """A fluxo-dados event on produtos-persistidos (the stored document) compared likewise."""
    return (
        value["id"],
        value["name"],
        value["description"],
        round(float(value["pricing"]["amount"]) * 100),
        value["pricing"]["currency"],
        value["availability"]["quantity"],
        value["category"],
    )


def table_row(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row of ``ROWS_SQL`` compared likewise (numeric or double price)."""
    rid, name, description, price, currency, quantity, category = values
    return (rid, name, description, round(float(price) * 100), currency.strip(), quantity, category)
