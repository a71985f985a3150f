"""PostgreSQL over TLS: the API verifies the server against the CA of DATABASE_URL.

The module starts a throw-away PostgreSQL server of its own (Debian's binaries, a data
directory under /tmp, a free port) with ``ssl = on``, a certificate signed by a CA the test
makes, and a pg_hba.conf that lets the ``fluxo`` role in over TLS only. The role ``plain``
may come in either way: it shows what the default on loopback is.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from services.api.app import create_app as create_api
from services.api.config import ApiConfig

from ..helpers import (
    TOKEN,
    auth,
    free_ports,
    isolated_kafka,
    transformed_record,
    unique,
    wait_ready,
)
from ..reliability.harness import tail
from ..tls import Certificates, make_certificates

Client = TestClient[web.Request, web.Application]

PASSWORD = "tls-test-password"

PG_HBA = """\
local all all trust
hostssl all fluxo 127.0.0.1/32 scram-sha-256
hostssl all fluxo ::1/128 scram-sha-256
host all plain 127.0.0.1/32 scram-sha-256
host all plain ::1/128 scram-sha-256
"""


@dataclass(frozen=True)
class TlsServer:
    port: int
    socket_dir: Path
    certificates: Certificates
    log: Path

    def url(self, user: str = "fluxo", query: str = "") -> str:
        return f"postgresql://{user}:{PASSWORD}@localhost:{self.port}/fluxo{query}"

    @property
    def verify_full(self) -> str:
        return self.url(query=f"?sslmode=verify-full&sslrootcert={self.certificates.ca}")

    async def superuser(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", database="fluxo"
        )


def _bin_dir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    assert versions, "PostgreSQL is not installed (scripts/postgres.sh install)"
    return versions[-1]


def _as_owner(*command: str | Path) -> list[str]:
    """Run as ``postgres`` when root (the server refuses to run as root)."""
    words = [str(word) for word in command]
    return ["runuser", "-u", "postgres", "--", *words] if os.geteuid() == 0 else words


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    directory = Path(tempfile.mkdtemp(prefix="fluxo-pg-tls-"))
    directory.chmod(0o755)
    certificates = make_certificates(directory / "tls")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    certificates.server_key.chmod(0o600)
    server = TlsServer(free_ports(), directory, certificates, directory / "postgres.log")
    data = directory / "data"
    bin_dir = _bin_dir()

    def run(*command: str | Path) -> None:
        subprocess.run(
            _as_owner(*command), check=True, capture_output=True, timeout=120, cwd=directory
        )

    run(bin_dir / "initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--no-sync")
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {server.port}\n"
            "listen_addresses = 'localhost'\n"
            f"unix_socket_directories = '{directory}'\n"
            "ssl = on\n"
            f"ssl_cert_file = '{certificates.server_cert}'\n"
            f"ssl_key_file = '{certificates.server_key}'\n"
            "fsync = off\n"
        )
    (data / "pg_hba.conf").write_text(PG_HBA)
    run(bin_dir / "pg_ctl", "-D", data, "-l", server.log, "-w", "-t", "60", "start")
    try:
        for statement in (
            f"CREATE ROLE fluxo LOGIN PASSWORD '{PASSWORD}'",
            f"CREATE ROLE plain LOGIN PASSWORD '{PASSWORD}'",
            "CREATE DATABASE fluxo OWNER fluxo",
        ):
            run(bin_dir / "psql", "-h", directory, "-p", str(server.port), "-U", "postgres",
                "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement)  # fmt: skip
        yield server
    finally:
        subprocess.run(
            _as_owner(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


async def _uses_tls(connection: asyncpg.Connection) -> bool:
    encrypted: bool = await connection.fetchval(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    )
    return encrypted


async def test_the_api_persists_over_tls_verified_against_the_ca_of_database_url(
    tls_server: TlsServer, aiohttp_client: AiohttpClient
) -> None:
    config = dataclasses.replace(
        ApiConfig.from_env({"API_TOKEN": TOKEN, "DATABASE_URL": tls_server.verify_full}),
        kafka=isolated_kafka(),
    )
    api = await aiohttp_client(create_api(config))

    await wait_ready(api, "API on the TLS database", context=lambda: tail(tls_server.log))
    response = await api.post(
        "/produto/scheduler", json=transformed_record(unique("tls")), headers=auth()
    )
    assert response.status == 201, await response.text()

    superuser = await tls_server.superuser()
    try:
        sessions = await superuser.fetch(
            "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
            " WHERE a.usename = 'fluxo' AND a.pid <> pg_backend_pid()"
        )
    finally:
        await superuser.close()
    assert sessions, "the API holds no connection to the database"
    assert all(session["ssl"] for session in sessions), sessions


async def test_a_plain_connection_is_refused(tls_server: TlsServer) -> None:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(tls_server.url(query="?sslmode=disable"))


async def test_a_server_certificate_from_another_ca_is_refused(
    tls_server: TlsServer, tmp_path: Path
) -> None:
    other_ca = make_certificates(tmp_path / "other", name="another CA").ca
    url = tls_server.url(query=f"?sslmode=verify-full&sslrootcert={other_ca}")

    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncpg.connect(url)


async def test_without_sslmode_a_server_on_loopback_is_reached_in_plain(
    tls_server: TlsServer,
) -> None:
    url = tls_server.url(user="plain")
    configured = ApiConfig.from_env({"API_TOKEN": TOKEN, "DATABASE_URL": url}).database_url

    by_default = await asyncpg.connect(configured)
    asyncpg_default = await asyncpg.connect(url)  # "prefer": TLS, since the server offers it
    try:
        assert not await _uses_tls(by_default)
        assert await _uses_tls(asyncpg_default)
    finally:
        await by_default.close()
        await asyncpg_default.close()
