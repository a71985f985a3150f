"""Typed application keys of the scheduler service."""

from aiohttp import web

from ..common.kafka import ManagedProducer
from ..common.metrics import SchedulerMetrics
from .api_client import ApiClient
from .config import SchedulerConfig
from .consumer import ProductConsumer
from .dead_letter_index import DeadLetterIndex
from .flow import Flow
from .redrive_jobs import RedriveJobs
from .redrives import Redriver

CONFIG = web.AppKey("config", SchedulerConfig)
METRICS = web.AppKey("metrics", SchedulerMetrics)
API = web.AppKey("api", ApiClient)
DEAD_LETTERS = web.AppKey("dead_letters", ManagedProducer)
CONSUMER = web.AppKey("consumer", ProductConsumer)
FLOW = web.AppKey("flow", Flow)
REDRIVER = web.AppKey("redriver", Redriver)
DEAD_LETTER_INDEX = web.AppKey("dead_letter_index", DeadLetterIndex)
REDRIVE_JOBS = web.AppKey("redrive_jobs", RedriveJobs)
