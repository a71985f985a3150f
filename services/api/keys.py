"""Typed application keys of the API service."""

from aiohttp import web

from ..common.kafka import ManagedProducer
from ..common.metrics import ApiMetrics
from .config import ApiConfig
from .database import Database
from .outbox import OutboxRelay

CONFIG = web.AppKey("config", ApiConfig)
METRICS = web.AppKey("metrics", ApiMetrics)
DATABASE = web.AppKey("database", Database)
PRODUCER = web.AppKey("producer", ManagedProducer)
RELAY = web.AppKey("relay", OutboxRelay)
