"""Running a service in the foreground: ``python -m services.api`` / ``services.scheduler``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from aiohttp import web
from dotenv import load_dotenv

from .logs import configure_logging
from .tracing import Tracing


class ServiceConfig(Protocol):
    @property
    def port(self) -> int: ...


C = TypeVar("C", bound=ServiceConfig)


def run(
    name: str,
    load_config: Callable[[Mapping[str, str]], C],
    create_app: Callable[[C, Tracing], web.Application],
    shutdown_timeout: float,
) -> None:
    """Load ``.env`` (the environment wins), configure logging, serve until SIGTERM."""
    load_dotenv()
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"), os.environ.get("LOG_FORMAT", "text"))
    config = load_config(os.environ)
    tracing = Tracing.from_environ(name.rsplit(".", 1)[-1], os.environ)
    logging.getLogger(name).info("starting %s on :%d (%r)", name, config.port, config)
    web.run_app(
        create_app(config, tracing), port=config.port, print=None, shutdown_timeout=shutdown_timeout
    )
