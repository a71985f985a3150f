"""``python -m services.api``: run the API in the foreground, logging to stdout."""

from ..common.service import run
from .app import create_app
from .config import ApiConfig

DESCRIPTION = (
    "The fluxo-dados API: "
    "validates product records, persists them in PostgreSQL and publishes them on Kafka."
)

if __name__ == "__main__":
    # In-flight requests get 20 s to finish on SIGTERM; the relay then ends its round.
    run("services.api", DESCRIPTION, ApiConfig.from_env, create_app, shutdown_timeout=20)
