"""The Kafka side as an AsyncAPI 3.0.0 document: served at ``/asyncapi.json``, rendered at
``/asyncapi`` (AsyncAPI's own component, vendored in ``static/asyncapi``), committed as
``docs/asyncapi.yaml`` (``make docs``, with ``.env.example``'s settings).

Payload schemas come from the marshmallow schemas that validate the HTTP side, through the
same converter (apispec's), so the two documents cannot drift. apispec writes OpenAPI 3.0
Schema Objects; AsyncAPI's default schema format is JSON Schema draft 7, so they are
converted: ``nullable`` becomes a type list, ``example`` becomes ``examples``, and keywords
only OpenAPI knows are dropped. References are inlined, so that each payload schema stands on
its own for any consumer's validator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from dotenv import dotenv_values

from ..common.contracts import EVENT_CONTENT_TYPE, ManualProductSchema, TransformedProductSchema
from ..common.http import json_response
from ..common.metrics import DEAD_LETTER_STAGES
from .config import SchedulerConfig
from .dead_letters import REDRIVE_ATTEMPT, REDRIVE_CORRECTED
from .keys import CONFIG
from .records import (
    DEAD_LETTER_PREFIX,
    REDRIVE_OF,
    Poison,
    UnreadableRecord,
    dead_letter_headers,
)

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
STATIC = Path(__file__).with_name("static") / "asyncapi"
ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"

# OpenAPI 3.0 keywords that JSON Schema draft 7 does not have (or reads otherwise).
OPENAPI_ONLY = frozenset(
    {"nullable", "example", "discriminator", "xml", "externalDocs", "deprecated"}
)
REF_PREFIX = "#/components/schemas/"

# W3C Trace Context: version-format-trace id-parent id-flags (a later version may append).
TRACEPARENT_PATTERN = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"
DIGITS = "^[0-9]+$"


def json_schema(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.0 Schema Object as JSON Schema draft 7, its references inlined."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF_PREFIX)
        return json_schema(definitions[name], definitions)
    converted: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in OPENAPI_ONLY:
            continue
        if keyword in ("properties", "patternProperties"):
            value = {name: json_schema(child, definitions) for name, child in value.items()}
        elif keyword in ("items", "additionalProperties", "not") and isinstance(value, dict):
            value = json_schema(value, definitions)
        elif keyword in ("allOf", "anyOf", "oneOf"):
            value = [json_schema(child, definitions) for child in value]
        converted[keyword] = value
    if "example" in schema:
        converted["examples"] = [schema["example"]]
    if schema.get("nullable"):
        kind = converted.get("type")
        if kind is None:
            converted = {"anyOf": [converted, {"type": "null"}]}
        else:
            kinds = kind if isinstance(kind, list) else [kind]
            converted["type"] = [*kinds, "null"] if "null" not in kinds else kinds
            if "enum" in converted and None not in converted["enum"]:
                converted["enum"] = [*converted["enum"], None]
    return converted


def payload_schemas() -> dict[str, dict[str, Any]]:
    """The record contracts as JSON Schema, written by apispec as for the OpenAPI documents."""
    spec = APISpec("fluxo-dados", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.schema("ManualProduct", schema=ManualProductSchema)
    spec.components.schema("TransformedProduct", schema=TransformedProductSchema)
    definitions = spec.to_dict()["components"]["schemas"]
    return {
        name: json_schema(definitions[name], definitions)
        for name in ("ManualProduct", "TransformedProduct")
    }


def example_of(schema: Mapping[str, Any]) -> Any:
    """A value of ``schema`` made of its fields' examples."""
    if "properties" in schema:
        return {name: example_of(child) for name, child in schema["properties"].items()}
    return schema["examples"][0]


def header(description: str, **schema: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **schema}


EVENT_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["event-id", "content-type"],
    "properties": {
        "event-id": header(
            "Unique per event: the id of the outbox row it was published from. At-least-once "
            "delivery may publish an event again; it then keeps its event-id, so a consumer "
            "drops an event whose event-id it has already seen.",
            pattern=DIGITS,
            examples=["1042"],
        ),
        "content-type": header(
            "The media type of the value and the version of its schema. Fields are only "
            "added within a version; a breaking change is a new version, published beside "
            "this one for a while (docs/topics.md).",
            const=EVENT_CONTENT_TYPE,
        ),
        "traceparent": header(
            "W3C trace context of the source record: the trace that started when it was "
            "produced to cadastro-produtos (or posted to the API).",
            pattern=TRACEPARENT_PATTERN,
            examples=["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        ),
    },
}

ORIGINAL = {"type": ["string", "null"], "description": "One of the original record's headers."}

DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The original record's headers, kept as they were (a header of its own "
    "named dlq-* is kept as original-dlq-*, so that every dlq-* header is the scheduler's), "
    "plus traceparent when it had none (the trace started for it), plus these.",
    # The names the scheduler writes, taken from the code that writes them.
    "required": [
        name
        for name, _ in dead_letter_headers(Poison(UnreadableRecord("", 0, 0), "decode", ""))
        if name.startswith(DEAD_LETTER_PREFIX)
    ],
    "properties": {
        "dlq-reason": header(
            "Why, in words: for a refused record, every bad field and what is wrong with it.",
            minLength=1,
            examples=['invalid fields: {"price":["Must have at most 2 decimal places."]}'],
        ),
        "dlq-stage": header(
            "Where it was refused: decode (empty, not UTF-8, not JSON, or unreadable by the "
            "Kafka client), validate (a field the contract refuses), api (refused by the API).",
            enum=list(DEAD_LETTER_STAGES),
        ),
        "dlq-source-topic": header("The topic the record was read from."),
        "dlq-source-partition": header("Its partition.", pattern=DIGITS),
        "dlq-source-offset": header("Its offset.", pattern=DIGITS),
        "dlq-source-timestamp": header(
            "Its Kafka timestamp, in milliseconds since the epoch (-1: unknown).",
            pattern="^-?[0-9]+$",
        ),
        "traceparent": {
            "type": ["string", "null"],
            "description": "The record's own trace context, or the one started for it.",
        },
    },
    "patternProperties": {
        "^original-dlq-": {
            "type": ["string", "null"],
            "description": "A header of the original record that was named dlq-*.",
        }
    },
    "additionalProperties": ORIGINAL,
}

PRODUCER_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        # Any value is taken: one that cannot be read starts a new trace, it refuses nothing.
        "traceparent": {
            "type": ["string", "null"],
            "description": "W3C trace context (00-<trace id>-<parent id>-<flags>); the "
            "record's trace continues from it. Absent or unreadable: a new trace is started.",
            "examples": EVENT_HEADERS["properties"]["traceparent"]["examples"],
        },
        # What a re-drive of a dead letter adds (POST /dead-letters/.../redrive).
        REDRIVE_OF: {
            "type": ["string", "null"],
            "description": "On a re-driven dead letter: its original source coordinates, "
            "<topic>/<partition>/<offset>. The record is ordered by them (and by its "
            "original timestamp, which it keeps), never as a newer write; a value that is "
            "not such coordinates is ignored.",
            "examples": ["cadastro-produtos/4/1207"],
        },
        REDRIVE_ATTEMPT: {
            "type": ["string", "null"],
            "description": "On a re-driven dead letter: which re-drive of it this is (1, 2, "
            "...); kept if it is dead-lettered again.",
            "examples": ["1"],
        },
        REDRIVE_CORRECTED: {
            "type": ["string", "null"],
            "description": "On a re-driven dead letter: true when an operator corrected its "
            "value, false when it was re-driven as it was.",
            "examples": ["false"],
        },
    },
    "additionalProperties": ORIGINAL,
}

REDRIVE_STATE: dict[str, Any] = {
    "type": "object",
    "required": ["type", "entry", "attempt"],
    "properties": {
        "type": {"type": "string", "enum": ["claim", "outcome"]},
        "entry": {
            "type": "string",
            "description": "The original record's coordinates, topic/partition/offset.",
        },
        "attempt": {"type": "integer", "minimum": 1},
        "claim": {"type": "string", "description": "A claim's random id."},
        "at": {"type": "string", "format": "date-time"},
        "expires": {
            "type": "string",
            "format": "date-time",
            "description": "Until when a claim holds its attempt; a claim written later "
            "takes the attempt over.",
        },
        "corrected": {"type": "boolean"},
        "token": {
            "type": "string",
            "description": "Who: 12 hex digits of the SHA-256 of the bearer token, never the "
            "token.",
        },
        "position": {
            "type": "string",
            "description": "An outcome's dead-letter position it was re-driven from.",
        },
        "topic": {"type": "string"},
        "partition": {"type": "integer", "minimum": 0},
        "offset": {"type": "integer", "minimum": 0},
    },
}

ORDERING = (
    "Keyed by the product id, so each product's events keep their order within a partition. "
    "Within one source partition the later offset wins, across partitions the later source "
    "timestamp; a replay of older records publishes nothing that regresses a product. "
    "Delivery is at least once: drop an event whose `event-id` you have already seen."
)


def servers(config: SchedulerConfig) -> dict[str, Any]:
    kafka = config.kafka
    server: dict[str, Any] = {
        "protocol": "kafka-secure" if kafka.uses_ssl else "kafka",
        "description": f"Kafka, security.protocol={kafka.security_protocol} "
        "(KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL).",
    }
    if kafka.uses_sasl:
        server["security"] = [{"$ref": "#/components/securitySchemes/sasl"}]
    hosts = [host.strip() for host in kafka.bootstrap_servers.split(",") if host.strip()]
    return {f"broker-{n}": {"host": host, **server} for n, host in enumerate(hosts, start=1)}


def security_schemes(config: SchedulerConfig) -> dict[str, Any]:
    kafka = config.kafka
    if not kafka.uses_sasl:
        return {}
    kind = {"PLAIN": "plain", "SCRAM-SHA-256": "scramSha256", "SCRAM-SHA-512": "scramSha512"}
    return {
        "sasl": {
            "type": kind[kafka.sasl_mechanism],
            "description": f"SASL {kafka.sasl_mechanism} with a user and password "
            "(KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)"
            + (", over TLS." if kafka.uses_ssl else "."),
        }
    }


def topic_binding(config: SchedulerConfig) -> dict[str, Any]:
    return {
        "kafka": {
            "partitions": config.kafka.partitions,
            "replicas": config.kafka.replication_factor,
            "bindingVersion": KAFKA_BINDING,
        }
    }


def key_binding(description: str) -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "description": description},
            "bindingVersion": KAFKA_BINDING,
        }
    }


def message_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{name}"}


def operation(
    action: str, channel: str, message: str, title: str, description: str, **extra: Any
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        "title": title,
        "description": description,
        **extra,
    }


def document(config: SchedulerConfig) -> dict[str, Any]:
    """The AsyncAPI document of the topics the services own, as ``config`` names them."""
    kafka = config.kafka
    schemas = payload_schemas()
    binding = topic_binding(config)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "fluxo-dados: Kafka topics",
            "version": "1.0.0",
            "description": "Product records enter on cadastro-produtos; the scheduler "
            "transforms each and hands it to the API, which persists it and publishes it on "
            "produtos-persistidos. Records that can never be processed go to the dead-letter "
            "topic with headers that say why. The HTTP side is at [/docs](/docs); what a "
            "consumer may rely on is in docs/topics.md.",
        },
        "defaultContentType": "application/json",
        "servers": servers(config),
        "channels": {
            "cadastroProdutos": {
                "address": kafka.topic_cadastro,
                "title": "Products to register",
                "description": "Input records, from any producer and from POST /produto/manual. "
                "Unknown fields are ignored, so a producer may add fields before consumers "
                "read them. A record whose value cannot be processed goes to deadLetters.",
                "messages": {"manualProduct": message_ref("ManualProduct")},
                "bindings": binding,
            },
            "produtosPersistidos": {
                "address": kafka.topic_persistidos,
                "title": "Persisted products",
                "description": "Each product as stored, once its write committed (the outbox "
                "relay publishes it and waits for the broker's acknowledgement). " + ORDERING,
                "messages": {"productPersisted": message_ref("ProductPersisted")},
                "bindings": binding,
            },
            "deadLetters": {
                "address": kafka.topic_dlq,
                "title": "Dead letters",
                "description": "Records of cadastroProdutos that can never be processed: the "
                "original key, value and headers, and dlq-* headers saying why and from where. "
                "The pipeline keeps flowing past them.",
                "messages": {"deadLetter": message_ref("DeadLetter")},
                "bindings": binding,
            },
            "deadLetterRedrives": {
                "address": kafka.topic_dlq_redrives,
                "title": "Dead-letter re-drives",
                "description": "Compacted. The schedulers' claims on re-driving a dead letter "
                "and their outcomes, in the partition of the entry's key "
                "(topic/partition/offset of the original record): the earliest claim of an "
                "attempt wins, so each attempt is re-driven once (docs/dead-letters.md).",
                "messages": {"redriveState": message_ref("RedriveState")},
                "bindings": binding,
            },
        },
        "operations": {
            "produceManualProduct": operation(
                "send",
                "cadastroProdutos",
                "manualProduct",
                "The API produces what POST /produto/manual accepted",
                "Keyed by productId, with the request's traceparent; answered once the broker "
                "acknowledged. Any other system may produce here too.",
            ),
            "consumeProducts": operation(
                "receive",
                "cadastroProdutos",
                "manualProduct",
                "The scheduler consumes, transforms and hands each record to the API",
                "Offsets are committed only once the API acknowledged a record or it went to "
                "the dead-letter topic. Instances in one consumer group share the partitions.",
                bindings={
                    "kafka": {
                        "groupId": {"type": "string", "enum": [config.consumer_group]},
                        "bindingVersion": KAFKA_BINDING,
                    }
                },
            ),
            "publishPersistedProduct": operation(
                "send",
                "produtosPersistidos",
                "productPersisted",
                "The API's outbox relay publishes each persisted product",
                "Written in the same transaction as the product; published in order per "
                "product, with acks=all. Consumers: any team that follows the products.",
            ),
            "deadLetter": operation(
                "send",
                "deadLetters",
                "deadLetter",
                "The scheduler dead-letters records it can never process",
                "Not JSON, not UTF-8, a field the contract refuses, or refused by the API. "
                "Read by whoever looks after the data (kcat, Kafka UI, `make read-topic`).",
            ),
            "recordRedrive": operation(
                "send",
                "deadLetterRedrives",
                "redriveState",
                "A scheduler claims a re-drive, then records its outcome",
                "Read back by every scheduler (without a consumer group, read_committed) to "
                "decide which claim holds an attempt and to show each dead letter's re-drives. "
                "An outcome is committed in one transaction with its re-driven record.",
            ),
        },
        "components": {
            "schemas": schemas,
            "messages": {
                "ManualProduct": {
                    "name": "manualProduct",
                    "title": "A product to register",
                    "contentType": "application/json",
                    "headers": PRODUCER_HEADERS,
                    "payload": {"$ref": REF_PREFIX + "ManualProduct"},
                    "bindings": key_binding(
                        "Should be the productId, so that a product's records keep their "
                        "order; any key, or none, is accepted."
                    ),
                    "examples": [
                        {"name": "product", "payload": example_of(schemas["ManualProduct"])}
                    ],
                },
                "ProductPersisted": {
                    "name": "productPersisted",
                    "title": "A product as persisted",
                    "summary": "The same bytes GET /produtos/{id} answers.",
                    "description": ORDERING,
                    "contentType": "application/json",
                    "headers": EVENT_HEADERS,
                    "payload": {"$ref": REF_PREFIX + "TransformedProduct"},
                    "bindings": key_binding("The product id (the value's id)."),
                    "examples": [
                        {
                            "name": "persisted",
                            "headers": {"event-id": "1042", "content-type": EVENT_CONTENT_TYPE},
                            "payload": example_of(schemas["TransformedProduct"]),
                        }
                    ],
                },
                "RedriveState": {
                    "name": "redriveState",
                    "title": "A claim on a re-drive, or its outcome",
                    "contentType": "application/json",
                    "payload": REDRIVE_STATE,
                    "bindings": key_binding(
                        "A claim: <entry>#<attempt>#<claim id>, a key of its own so that "
                        "compaction never drops an earlier claim; an outcome: <entry>#<attempt>."
                    ),
                },
                "DeadLetter": {
                    "name": "deadLetter",
                    "title": "A record that can never be processed",
                    "contentType": "application/octet-stream",
                    "headers": DEAD_LETTER_HEADERS,
                    "payload": {
                        "description": "The original record's value, byte for byte: it may be "
                        "empty, not UTF-8 or not JSON."
                    },
                    "bindings": key_binding("The original record's key, unchanged."),
                },
            },
            **({"securitySchemes": schemes} if (schemes := security_schemes(config)) else {}),
        },
    }


BASELINES = ROOT / "docs" / "asyncapi-baseline"


def event_contract(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a consumer of produtos-persistidos relies on: the event's headers and payload."""
    message = doc["components"]["messages"]["ProductPersisted"]
    headers = message["headers"]
    return {
        "content-type": headers["properties"]["content-type"]["const"],
        "headers": headers,
        "payload": doc["components"]["schemas"]["TransformedProduct"],
    }


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    kind = schema.get("type")
    if kind is None:
        return None
    return set(kind) if isinstance(kind, list) else {kind}


def breaking_changes(
    baseline: Mapping[str, Any], current: Mapping[str, Any], path: str = ""
) -> list[str]:
    """How ``current`` would break a consumer written against ``baseline`` (JSON Schemas):
    a field removed or renamed, retyped, made nullable, or no longer always present.
    Added fields break nothing."""
    where = path or "the value"
    problems: list[str] = []
    was, now = _types(baseline), _types(current)
    if was is not None and now is not None:
        if "null" in now and "null" not in was:
            problems.append(f"{where} may now be null")
        if now - {"null"} != was - {"null"}:
            problems.append(f"{where} retyped from {sorted(was)} to {sorted(now)}")
    fields = current.get("properties", {})
    required = set(current.get("required", ()))
    for name, schema in baseline.get("properties", {}).items():
        field = f"{path}.{name}" if path else name
        if name not in fields:
            problems.append(f"{field} removed (or renamed)")
            continue
        if name in baseline.get("required", ()) and name not in required:
            problems.append(f"{field} no longer always present")
        problems.extend(breaking_changes(schema, fields[name], field))
    return problems


def committed_config(root: Path = ROOT) -> SchedulerConfig:
    """The settings of ``.env.example``, which the committed document is generated with."""
    values = {key: value or "" for key, value in dotenv_values(root / ".env.example").items()}
    return SchedulerConfig.from_env(values)


def yaml_text(doc: Mapping[str, Any]) -> str:
    """The document as the committed YAML file holds it."""
    # PyYAML is a development dependency: only `make docs` and the suite write YAML; the
    # service serves JSON.
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # each part written out where it is used, not as an anchor

    text: str = yaml.dump(dict(doc), Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "# Generated by `make docs` from the code and .env.example: do not edit.\n" + text


async def asyncapi_json(request: web.Request) -> web.Response:
    return json_response(document(request.app[CONFIG]))


async def asyncapi_page(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def setup_asyncapi(app: web.Application) -> None:
    """``/asyncapi.json``, the page that renders it, and the page's vendored script."""
    app.router.add_get("/asyncapi.json", asyncapi_json, allow_head=False)
    app.router.add_get("/asyncapi", asyncapi_page, allow_head=False)
    app.router.add_static("/asyncapi/", STATIC)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.scheduler.asyncapi",
        description="Write the AsyncAPI document of .env.example's settings (docs/asyncapi.yaml).",
    )
    parser.add_argument("--output", type=Path, default=COMMITTED)
    arguments = parser.parse_args(argv)
    arguments.output.write_text(yaml_text(document(committed_config())), encoding="utf-8")
    print(f"wrote {arguments.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
