"""What scripts/postgres.sh asks of a Patroni cluster through the nodes' REST APIs (standard
library only: it runs on the system's python3, before any virtualenv exists).

Usage: cluster.py ready NODES FIRST_REST_PORT    succeeds (printing the leader and the
                                                 synchronous standby) when a leader runs and
                                                 NODES - 1 replicas follow, one synchronously
       cluster.py leader NODES FIRST_REST_PORT   the leader's node number (1..NODES)
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


def members(nodes: int, first_port: int) -> list[dict[str, Any]]:
    """The members as the first node that answers sees them (GET /cluster)."""
    for n in range(nodes):
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{first_port + n}/cluster", timeout=2
            ) as answer:
                found: list[dict[str, Any]] = json.load(answer).get("members", [])
                return found
        except (OSError, ValueError):
            continue
    return []


def node_number(member: dict[str, Any]) -> int:
    return int(str(member["name"]).rpartition("-")[2])


def leader(nodes: int, first_port: int) -> int | None:
    for member in members(nodes, first_port):
        if member.get("role") == "leader" and member.get("state") == "running":
            return node_number(member)
    return None


def ready(nodes: int, first_port: int) -> str | None:
    """A line describing the cluster when it is ready, else None."""
    found = members(nodes, first_port)
    leaders = [m for m in found if m.get("role") == "leader" and m.get("state") == "running"]
    following = [m for m in found if m.get("role") in ("replica", "sync_standby")
                 and m.get("state") in ("running", "streaming")]  # fmt: skip
    synchronous = [m for m in following if m.get("role") == "sync_standby"]
    if len(leaders) != 1 or len(following) != nodes - 1 or (nodes > 1 and not synchronous):
        return None
    return f"leader {leaders[0]['name']}, synchronous standby " + ", ".join(
        str(m["name"]) for m in synchronous
    )


def main(argv: list[str]) -> int:
    actions: dict[str, Callable[[int, int], object | None]] = {"leader": leader, "ready": ready}
    if len(argv) != 3 or argv[0] not in actions:
        print(__doc__, file=sys.stderr)
        return 2
    answer = actions[argv[0]](int(argv[1]), int(argv[2]))
    if answer is None:
        return 1
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
