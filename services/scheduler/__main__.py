"""``python -m services.scheduler``: run the scheduler in the foreground, logging to stdout."""

import logging
import os

from aiohttp import web
from dotenv import load_dotenv

from ..common.logs import configure_logging
from .app import create_app
from .config import SchedulerConfig


def main() -> None:
    load_dotenv()
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    config = SchedulerConfig.from_env(os.environ)
    logging.getLogger(__name__).info("starting scheduler on :%d (%r)", config.port, config)
    web.run_app(create_app(config), port=config.port, print=None, shutdown_timeout=5)


if __name__ == "__main__":
    main()
