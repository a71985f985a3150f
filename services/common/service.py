"""Running a service in the foreground (``python -m services.api`` / ``services.scheduler``),
and ending the background tasks its cleanup contexts start."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from aiohttp import web
from dotenv import load_dotenv

from .config import ConfigError, HttpConfig, SettingsCatalog
from .content_encoding import content_encoding_middleware
from .http import bearer_auth, error_middleware
from .logs import configure_logging
from .metrics import HttpMetrics
from .protocol import answer_malformed_requests_in_json
from .tracing import TRACING, Tracing, trace_middleware


class ServiceConfig(Protocol):
    @property
    def port(self) -> int: ...


C = TypeVar("C", bound=ServiceConfig)


def service_app(
    tokens: Sequence[str],
    metrics: HttpMetrics,
    tracing: Tracing,
    http: HttpConfig,
    *,
    client_max_size: int = 1024**2,
) -> web.Application:
    """What both services' applications are built on: the middlewares in their order
    (metrics outermost, then the trace, the error envelope, the bearer token, the body's
    content encoding), ``/metrics``, the connection handler's limits and JSON answers (see
    ``protocol``), and the tracing provider shut down last at cleanup (so the other
    resources' spans are exported)."""
    answer_malformed_requests_in_json()
    app = web.Application(
        middlewares=[
            metrics.middleware(),
            trace_middleware(tracing),
            error_middleware,
            bearer_auth(tokens),
            content_encoding_middleware,
        ],
        handler_args={
            # Bodies are decoded by content_encoding_middleware, completely or not at all.
            "auto_decompress": False,
            "header_timeout": http.header_timeout,
            "body_timeout": http.body_timeout,
            "keepalive_timeout": http.keepalive_timeout,
            "max_connections": http.max_connections,
            "max_body_bytes": client_max_size,
        },
        client_max_size=client_max_size,
    )
    app[TRACING] = tracing
    app.cleanup_ctx.append(_tracing_ctx)
    app.router.add_get("/metrics", metrics.handler(), allow_head=False)
    return app


async def _tracing_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    app[TRACING].shutdown()


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def settings_help(load_config: Callable[[Mapping[str, str]], object]) -> str:
    """Each setting the configuration reads, with its default.

    The configuration is loaded from an environment that notes every read; a setting it
    cannot do without (its error message starts with the variable's name) is given a stand-in
    value, and the load tried again, so that the settings read after it are listed too.
    """
    catalog = SettingsCatalog()
    while True:
        try:
            load_config(catalog)
            break
        except ConfigError as error:
            name = str(error).split(" ", 1)[0]
            if name in catalog or not name.isupper():
                raise
            catalog[name] = "stand-in"
    # Read by run() itself.
    catalog.defaults.setdefault("LOG_LEVEL", "INFO")
    catalog.defaults.setdefault("LOG_FORMAT", "text")
    catalog.defaults.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    width = max(len(variable) for variable in catalog.defaults)
    return "\n".join(
        f"  {variable:<{width}}  {default or '(empty)'}"
        for variable, default in catalog.defaults.items()
    )


def parse_arguments(name: str, description: str, help_text: str, argv: Sequence[str]) -> None:
    """``--help`` prints the settings and exits; the service takes no other argument."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {name}",
        description=f"{description} Runs in the foreground, logging to stdout, until SIGTERM.",
        epilog="Settings, read from the environment, then from .env in the working directory "
        f"(variable and default; see .env.example for what each means):\n{help_text}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)


# Records pass through a service as many short-lived objects (a batch of 500 makes some
# 15,000), freed by reference counting as soon as the batch is done. At CPython's default
# threshold (700 allocations) the cyclic collector ran some twenty times per batch, and
# every few batches walked every object of the process (60,000 from start-up alone): 13 % of
# the API's CPU and 20 % of the scheduler's on a backlog drain. A higher threshold, and the
# objects made at start-up (modules, schemas, the app; never garbage) frozen out of the
# collector's walks, leave a few cheap collections per 100,000 records; garbage that does
# form cycles still goes, a little later.
GC_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """Freeze what exists now out of the collector's walks; collect less often."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, older, oldest)


def run(
    name: str,
    description: str,
    load_config: Callable[[Mapping[str, str]], C],
    create_app: Callable[[C, Tracing], web.Application],
    *,
    shutdown_timeout: float,
) -> None:
    """Read the command line, load ``.env`` (the environment wins), configure logging, serve
    until SIGTERM."""
    parse_arguments(name, description, settings_help(load_config), sys.argv[1:])
    load_dotenv()
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"), os.environ.get("LOG_FORMAT") or "text")
    config = load_config(os.environ)
    tracing = Tracing.from_environ(name.rsplit(".", 1)[-1], os.environ)
    log = logging.getLogger(name)
    log.info("starting %s on :%d (%r)", name, config.port, config)
    app = create_app(config, tracing)

    async def announce_shutdown(_: web.Application) -> None:
        log.info("shutting down %s: in-flight work gets %g s", name, shutdown_timeout)

    app.on_shutdown.insert(0, announce_shutdown)
    tune_garbage_collector()
    web.run_app(app, port=config.port, print=None, shutdown_timeout=shutdown_timeout)
    log.info("%s stopped", name)
