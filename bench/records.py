"""The benchmark's records and the forms each stage carries them in.

Input records look like a Brazilian retailer's catalogue (accents, cents, long-ish
descriptions), so that JSON, validation and the database see realistic sizes and text.
They are generated from a seed, so every stage of one run sees the same bytes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from services.api.handlers import load_item
from services.common import jsoncodec
from services.common.contracts import TransformedProduct
from services.common.ordering import Source
from services.scheduler.records import to_work

# (product, category) pairs: a category that fits the product reads like real data.
PRODUCTS = (
    ("Café torrado e moído", "Mercearia"),
    ("Açúcar mascavo", "Mercearia"),
    ("Feijão carioca", "Mercearia"),
    ("Arroz integral", "Mercearia"),
    ("Azeite de oliva extravirgem", "Mercearia"),
    ("Farinha de mandioca", "Mercearia"),
    ("Castanha-do-pará", "Mercearia"),
    ("Goiabada cascão", "Doces & Sobremesas"),
    ("Doce de leite", "Doces & Sobremesas"),
    ("Rapadura", "Doces & Sobremesas"),
    ("Queijo minas frescal", "Frios e Laticínios"),
    ("Requeijão cremoso", "Frios e Laticínios"),
    ("Pão de queijo congelado", "Congelados"),
    ("Guaraná natural", "Bebidas"),
    ("Erva-mate para chimarrão", "Bebidas"),
    ("Cachaça artesanal", "Bebidas"),
    ("Panela de pressão", "Casa e Cozinha"),
    ("Jogo de panelas antiaderente", "Casa e Cozinha"),
    ("Chaleira elétrica", "Eletroportáteis"),
    ("Toalha de banho", "Cama, Mesa e Banho"),
    ("Rede de dormir", "Cama, Mesa e Banho"),
    ("Sandália de couro", "Moda e Calçados"),
    ("Camiseta de algodão", "Moda e Calçados"),
    ("Caderno universitário", "Papelaria"),
    ("Lápis de cor", "Papelaria"),
    ("Fone de ouvido sem fio", "Eletrônicos"),
    ("Carregador portátil", "Eletrônicos"),
    ("Sabonete de maracujá", "Higiene e Beleza"),
    ("Protetor solar FPS 50", "Higiene e Beleza"),
    ("Vassoura de piaçava", "Limpeza"),
)
QUALIFIERS = (
    "orgânico",
    "tradicional",
    "premium",
    "sem glúten",
    "edição especial",
    "linha profissional",
    "tamanho família",
    "refil econômico",
)
BRANDS = (
    "Serra Azul",
    "Mineirinho",
    "Bom Sabor",
    "Vale Verde",
    "Sol Nascente",
    "Recanto",
    "Cantareira",
    "Boa Safra",
)
SIZES = ("500 g", "1 kg", "2 kg", "250 ml", "1 L", "unidade", "kit com 3", "pacote com 12")
ORIGINS = ("Minas Gerais", "Pernambuco", "Rio Grande do Sul", "Bahia", "Pará", "Ceará")
SENTENCES = (
    "Produzido em {origin} com matéria-prima selecionada.",
    "Ideal para o café da manhã e para o lanche da tarde.",
    "Embalagem resistente, fácil de abrir e de fechar.",
    "Garantia de 90 dias contra defeitos de fabricação.",
    "Não contém glúten. Pode conter traços de leite e castanhas.",
    "Conservar em local seco e arejado, ao abrigo da luz.",
    "Após aberto, consumir em até 30 dias.",
    "Atende às normas do Inmetro e da Anvisa.",
)
# Most of the catalogue is priced in reais.
CURRENCIES = ("BRL",) * 18 + ("USD", "EUR")


def id_prefix(run_id: str) -> str:
    """Every product id of a run starts with it: ``bench-<run id>-<n>``."""
    return f"bench-{run_id}-"


def product(rng: random.Random, product_id: str) -> dict[str, Any]:
    kind, category = rng.choice(PRODUCTS)
    brand, size = rng.choice(BRANDS), rng.choice(SIZES)
    origin = rng.choice(ORIGINS)
    sentences = " ".join(s.format(origin=origin) for s in rng.sample(SENTENCES, 3))
    return {
        "productId": product_id,
        "productName": f"{kind} {rng.choice(QUALIFIERS)} {brand} {size}",
        "productDescription": f"{kind} da marca {brand}, {size}. {sentences}",
        "price": rng.randint(99, 999_999) / 100,  # cents, sent as a JSON number
        "currency": rng.choice(CURRENCIES),
        "stockQuantity": rng.randint(0, 5_000),
        "category": category,
    }


def records(run_id: str, first: int, count: int) -> Iterator[tuple[bytes, bytes]]:
    """Input records ``first`` to ``first + count - 1`` of a run: (key, value) as produced.

    Generated lazily, so a backlog of hundreds of thousands costs no memory up front.
    """
    rng = random.Random(f"{run_id}:{first}")
    prefix = id_prefix(run_id)
    for n in range(first, first + count):
        product_id = f"{prefix}{n}"
        yield product_id.encode(), jsoncodec.dumps(product(rng, product_id))


def traceparent(key: bytes) -> bytes:
    """The W3C trace context a record is produced with, as a traced producer would send it:
    the pipeline carries it to produtos-persistidos (its cost is part of what is measured)."""
    trace_id = hashlib.blake2b(key, digest_size=16, person=b"fluxo-trace").hexdigest()
    span_id = hashlib.blake2b(key, digest_size=8, person=b"fluxo-span").hexdigest()
    return f"00-{trace_id}-{span_id}-01".encode()


@dataclass(frozen=True)
class SourceRecord:
    """A fetched Kafka record, as much of it as ``services.scheduler.records`` reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def batch_bodies(
    values: Sequence[tuple[bytes, bytes]],
    *,
    topic: str,
    partitions: int,
    batch_size: int,
    timestamp_ms: int,
) -> list[bytes]:
    """The request bodies the scheduler posts for these records, batch by batch.

    Built with the scheduler's own ``to_work`` and the same encoder as its API client.
    """
    fetched = [
        SourceRecord(topic, n % partitions, n // partitions, timestamp_ms, key, value)
        for n, (key, value) in enumerate(values)
    ]
    bodies: list[bytes] = []
    batches = iter(fetched)
    while batch := list(islice(batches, batch_size)):
        bodies.append(jsoncodec.dumps({"items": [to_work(record).item for record in batch]}))
    return bodies


def batch_rows(body: bytes) -> list[tuple[TransformedProduct, Source | None]]:
    """What the API hands to ``upsert_products`` for a batch body (validated, typed)."""
    return [load_item(item) for item in jsoncodec.loads(body)["items"]]
