"""scripts/services.sh: several API replicas and schedulers on consecutive ports.

The script runs the real services in the background against the shared Kafka and
PostgreSQL, with this test's own run directory, database, topics and consumer group.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import aiohttp

from services.common.config import KafkaConfig

from ..helpers import ROOT, TOKEN, auth, eventually, free_ports, relay_locks, topic_settings, unique


def services_sh(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "services.sh"), action],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def pid_files(run_dir: Path) -> list[str]:
    return sorted(path.stem for path in run_dir.glob("*.pid"))


def gone(pid: int) -> bool:
    """The process exited (a zombie waiting for its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


async def test_services_sh_runs_apis_and_schedulers_on_consecutive_ports_and_stops_them_all(
    tmp_path: Path, database: str, kafka: KafkaConfig
) -> None:
    first = free_ports(4)  # one range, so the two pairs cannot overlap
    api_port, scheduler_port = first, first + 2
    env = {
        **os.environ,
        "FLUXO_RUN_DIR": str(tmp_path),
        "APIS": "2",
        "SCHEDULERS": "2",
        "API_PORT": str(api_port),
        "SCHEDULER_PORT": str(scheduler_port),
        "API_TOKEN": TOKEN,
        "DATABASE_URL": database,
        **topic_settings(kafka),
        "KAFKA_CONSUMER_GROUP": unique("runner"),
    }
    try:
        started = await asyncio.to_thread(services_sh, "start", env)
        assert started.returncode == 0, started.stdout + started.stderr
        names = ["api-1", "api-2", "scheduler-1", "scheduler-2"]
        assert pid_files(tmp_path) == names
        pids = {name: int((tmp_path / f"{name}.pid").read_text()) for name in names}

        apis = f"http://localhost:{api_port},http://localhost:{api_port + 1}"
        for n in (1, 2):
            scheduler_env = environ_of(pids[f"scheduler-{n}"])
            assert scheduler_env["SCHEDULER_PORT"] == str(scheduler_port + n - 1)
            assert scheduler_env["API_URL"] == apis
        async with aiohttp.ClientSession() as http:
            for port in (scheduler_port, scheduler_port + 1):
                async with http.get(f"http://localhost:{port}/status", headers=auth()) as r:
                    assert r.status == 200, await r.text()
            for port in (api_port, api_port + 1):
                async with http.get(f"http://localhost:{port}/ready") as r:
                    assert r.status == 200, await r.text()

        async def both_relaying() -> bool:
            return len(await relay_locks(database)) == 2

        await eventually(both_relaying, within=30, what="both API replicas holding relay slots")
        info = await asyncio.to_thread(services_sh, "info", env)
        assert f"http://localhost:{api_port + 1}/docs" in info.stdout
    finally:
        stopped = await asyncio.to_thread(services_sh, "stop", env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert pid_files(tmp_path) == []
    assert all(gone(pid) for pid in pids.values())
