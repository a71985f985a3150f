"""A certificate authority of the test's own, made with openssl: a CA and a server
certificate for ``localhost`` and ``127.0.0.1``, valid for a day."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # PEM certificate of the CA: what clients trust
    server_cert: Path  # PEM certificate of the server, signed by the CA
    server_key: Path  # its unencrypted PKCS#8 private key

    def keystore(self) -> Path:
        """Key then certificate in one PEM file, as Kafka's ``ssl.keystore.type=PEM`` reads."""
        path = self.server_key.with_name("server-keystore.pem")
        path.write_text(self.server_key.read_text() + self.server_cert.read_text())
        return path


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path, name: str = "fluxo test CA") -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        directory,
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-keyout", "ca.key", "-out", "ca.pem", "-subj", f"/CN={name}"),
        # What strict verification (Python 3.13's default) asks of a CA.
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    _openssl(
        directory,
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key"),
        *("-out", "server.csr", "-subj", "/CN=localhost"),
    )
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n"
    )
    _openssl(
        directory,
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "1", "-extfile", "server.ext", "-out", "server.pem"),
    )
    return Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
    )
