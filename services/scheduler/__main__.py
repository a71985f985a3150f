"""``python -m services.scheduler``: run the scheduler in the foreground, logging to stdout."""

from ..common.service import run
from .app import create_app
from .config import SchedulerConfig

DESCRIPTION = (
    "The fluxo-dados scheduler: "
    "consumes cadastro-produtos, transforms each record and hands it to the API."
)

if __name__ == "__main__":
    # Operator requests get 5 s; the batches in flight then get SchedulerConfig.shutdown_timeout.
    run("services.scheduler", DESCRIPTION, SchedulerConfig.from_env, create_app, shutdown_timeout=5)
