"""Typed application keys of the scheduler service."""

from aiohttp import web

from ..common.http import Metrics
from ..common.kafka import ManagedProducer
from .api_client import ApiClient
from .config import SchedulerConfig
from .consumer import ProductConsumer

CONFIG = web.AppKey("config", SchedulerConfig)
METRICS = web.AppKey("metrics", Metrics)
API = web.AppKey("api", ApiClient)
DEAD_LETTERS = web.AppKey("dead_letters", ManagedProducer)
CONSUMER = web.AppKey("consumer", ProductConsumer)
