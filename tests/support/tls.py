"""Test certificates made with the `openssl` command: a CA and a loopback server certificate."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool


@dataclass(frozen=True)
class Pki:
    """A CA and a certificate for 127.0.0.1 / localhost signed by it (server or client)."""

    ca_cert: Path
    cert: Path
    key: Path


def _run(openssl: str, *args: str) -> None:
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)


def make_pki(directory: Path, name: str = "revmon-test") -> Pki:
    """Write a fresh CA and a server certificate (SAN 127.0.0.1 and localhost) into `directory`."""
    openssl = require_tool("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    _run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name} CA", "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    _run(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr))  # fmt: skip
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _run(openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return Pki(ca_cert=ca_cert, cert=cert, key=key)


class Stunnel:
    """stunnel4 (Debian) terminating TLS on a loopback port in front of a plaintext service."""

    def __init__(
        self,
        workdir: Path,
        pki: Pki,
        connect_port: int,
        accept_port: int,
        *,
        client_ca: Path | None = None,
    ) -> None:
        """With `client_ca`, clients must present a certificate that CA signed (mutual TLS)."""
        self._binary = require_tool("stunnel4")
        self.port = accept_port
        workdir.mkdir(parents=True, exist_ok=True)
        self._config = workdir / "stunnel.conf"
        self._config.write_text(
            "foreground = yes\n"
            "pid =\n"
            f"output = {workdir / 'stunnel.log'}\n"
            "[kafka]\n"
            f"accept = 127.0.0.1:{accept_port}\n"
            f"connect = 127.0.0.1:{connect_port}\n"
            f"cert = {pki.cert}\n"
            f"key = {pki.key}\n"
            + (f"verify = 2\nCAfile = {client_ca}\n" if client_ca is not None else "")
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, limit: float = 15.0) -> Stunnel:
        """Start it and wait until it accepts connections."""
        self._proc = subprocess.Popen(
            [self._binary, str(self._config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AssertionError(f"stunnel exited with {self._proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self
            time.sleep(0.05)
        raise AssertionError(f"stunnel did not listen on {self.port} within {limit:g}s")

    def stop(self) -> None:
        """Stop it and wait."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
