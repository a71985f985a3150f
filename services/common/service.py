"""Running a service in the foreground: ``python -m services.api`` / ``services.scheduler``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from aiohttp import web
from dotenv import load_dotenv

from .logs import configure_logging


class ServiceConfig(Protocol):
    @property
    def port(self) -> int: ...


C = TypeVar("C", bound=ServiceConfig)


def run(
    name: str,
    load_config: Callable[[Mapping[str, str]], C],
    create_app: Callable[[C], web.Application],
    shutdown_timeout: float,
) -> None:
    """Load ``.env`` (the environment wins), configure logging, serve until SIGTERM."""
    load_dotenv()
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    config = load_config(os.environ)
    log = logging.getLogger(name)
    log.info("starting %s on :%d (%r)", name, config.port, config)
    app = create_app(config)

    async def announce_shutdown(_: web.Application) -> None:
        log.info("shutting down %s: in-flight work gets %g s", name, shutdown_timeout)

    app.on_shutdown.insert(0, announce_shutdown)
    web.run_app(app, port=config.port, print=None, shutdown_timeout=shutdown_timeout)
    log.info("%s stopped", name)
