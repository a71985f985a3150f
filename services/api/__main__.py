"""``python -m services.api``: run the API in the foreground, logging to stdout."""

import logging
import os

from aiohttp import web
from dotenv import load_dotenv

from ..common.logs import configure_logging
from .app import create_app
from .config import ApiConfig


def main() -> None:
    load_dotenv()
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    config = ApiConfig.from_env(os.environ)
    logging.getLogger(__name__).info("starting API on :%d (%r)", config.port, config)
    web.run_app(create_app(config), port=config.port, print=None, shutdown_timeout=20)


if __name__ == "__main__":
    main()
