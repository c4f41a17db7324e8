"""A throwaway CA with server and client certificates, made with the openssl command line."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verification against it must fail


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(directory: Path, server_names: str = "DNS:localhost") -> Certs:
    """CA, a server certificate for `server_names` (subjectAltName) and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ca in ("ca", "other-ca"):
        key, cert = directory / f"{ca}.key", directory / f"{ca}.pem"
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=quizapp test {ca}", "-keyout", str(key), "-out", str(cert),
        )  # fmt: skip
        paths[ca] = (key, cert)
    for leaf, extension in (
        ("server", f"subjectAltName={server_names}"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        key, csr, cert = directory / f"{leaf}.key", directory / f"{leaf}.csr", directory / f"{leaf}.pem"
        _openssl(
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={leaf}",
            "-keyout", str(key), "-out", str(csr),
        )  # fmt: skip
        ext = directory / f"{leaf}.ext"
        ext.write_text(extension + "\n")
        ca_key, ca_cert = paths["ca"]
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        key.chmod(0o600)
    return Certs(
        ca=paths["ca"][1],
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=paths["other-ca"][1],
    )
