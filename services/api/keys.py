"""Typed application keys of the API service."""

from aiohttp import web

from ..common.http import Metrics
from ..common.kafka import ManagedProducer
from .config import ApiConfig
from .database import Database
from .outbox import OutboxRelay

CONFIG = web.AppKey("config", ApiConfig)
METRICS = web.AppKey("metrics", Metrics)
DATABASE = web.AppKey("database", Database)
PRODUCER = web.AppKey("producer", ManagedProducer)
RELAY = web.AppKey("relay", OutboxRelay)
