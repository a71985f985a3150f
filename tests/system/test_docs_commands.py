"""docs/docker.md's commands, in order and as written, on the host's Docker engine.

They run in a shell like a user's: nothing set but PATH and HOME, on the default host ports,
with the .env of the checkout. So `docker compose exec`, `ps` and `logs` after
`make compose-up` must work with no variable exported by hand, which needs the Kafka UI
login that `make compose-up` writes into .env.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.doc_blocks import following, run_blocks

from .docker import (
    OWNER,
    ROOT,
    TIMINGS,
    claim_project,
    port_in_use,
    project_objects,
    remove_project,
    script,
)

DEFAULT_PORTS = (8000, 8010, 9094)  # the compose file's API, scheduler and Kafka host ports
USER_ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}


def in_a_users_shell(text: str, follows_a_log: bool) -> tuple[int, str, str]:
    result = subprocess.run(
        ["bash", "-c", following(text) if follows_a_log else text],
        cwd=ROOT, env=USER_ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


@pytest.mark.timeout(900)
def test_the_docker_pages_commands_work_as_written() -> None:
    claim_project()
    busy = [port for port in DEFAULT_PORTS if port_in_use(port)]
    assert not busy, (
        f"host ports {busy} are in use (a `make up`?); docs/docker.md's commands publish on "
        "the defaults: stop what holds them (`make down`) and run the test again"
    )
    OWNER.parent.mkdir(exist_ok=True)
    OWNER.write_text("the docs test owns the fluxo-dados project while this file exists\n")
    try:
        done = run_blocks(ROOT / "docs" / "docker.md", in_a_users_shell)
        TIMINGS.extend(f"docs/docker.md: {line}" for line in done)
    finally:
        # `make compose-down` also stops the dockerd that `make test-system` started:
        # the tests after this one need it again.
        script("engine")
        if project_objects():
            remove_project()
        OWNER.unlink()
    env_file = (ROOT / ".env").read_text(encoding="utf-8")
    logins = re.findall(r"^KAFKA_UI_PASSWORD=.+$", env_file, re.MULTILINE)
    assert len(logins) == 1, f".env holds {len(logins)} Kafka UI passwords"
