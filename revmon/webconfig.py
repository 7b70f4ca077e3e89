"""`web_config`: Prometheus' web configuration file format for revmon's HTTP endpoints (SPEC §9).

The same file an operator writes for any Prometheus exporter (exporter-toolkit's
`web-config.yml`): `tls_server_config` (`cert_file`, `key_file`, optionally
`client_ca_file` with `client_auth_type`, `min_version`, `max_version`) turns on HTTPS,
`basic_auth_users` maps user names to bcrypt hashes. Relative paths are relative to the
directory of the web config file, as in exporter-toolkit. An unknown key is an error,
never silently ignored: an operator who believes `/metrics` is protected must be right.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

_TLS_KEYS = frozenset(
    {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
)
_TOP_KEYS = frozenset({"tls_server_config", "basic_auth_users", "http_server_config"})
_HTTP_KEYS = frozenset({"headers"})
_VERSIONS = {
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
#: exporter-toolkit's client_auth_type values revmon supports, with what they ask of the client.
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_BCRYPT_MAX = 72
#: Checked against when the user is unknown, so a wrong user costs what a wrong password does.
_DUMMY_HASH = b"$2b$10$zjQOa1OMvOfS3Ybc8LlSTuSOkHBnzJ2ZvtEyWcOz4lW5UCnXETjNi"


class WebConfigError(ValueError):
    """The web config file is unreadable or invalid; the message says which key."""


@dataclass(frozen=True, slots=True)
class TlsServer:
    """HTTPS for the endpoints: server certificate and key, optional client verification."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED

    def context(self) -> ssl.SSLContext:
        """A server TLS context; raises WebConfigError when a file cannot be loaded."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = self.min_version
        context.maximum_version = self.max_version
        try:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
            if self.client_ca_file is not None:
                context.load_verify_locations(cafile=str(self.client_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"tls_server_config: cannot load the certificate, key or CA: {_reason(exc)}"
            ) from None
        context.verify_mode = self.client_auth
        return context


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The parsed web config: TLS (or None: plain HTTP) and basic-auth users (empty: no auth)."""

    tls: TlsServer | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def auth_required(self) -> bool:
        """True when every path but /healthz needs basic auth."""
        return bool(self.users)

    def check_password(self, user: str, password: str) -> bool:
        """True when `password` matches the user's bcrypt hash (slow by design: ~bcrypt cost)."""
        hashed = self.users.get(user)
        secret = password.encode()
        # bcrypt reads 72 bytes at most (the library refuses more): a longer password never
        # matches, after the same work as any other wrong password.
        ok = bcrypt.checkpw(secret[:_BCRYPT_MAX], hashed or _DUMMY_HASH)
        return ok and hashed is not None and len(secret) <= _BCRYPT_MAX


class PasswordCache:
    """Remembers credentials that checked out, so a scrape every second costs one bcrypt.

    exporter-toolkit caches the same way; only a digest of the password is kept.
    """

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._good: dict[tuple[str, bytes], None] = {}

    def _key(self, user: str, password: str) -> tuple[str, bytes]:
        return user, hashlib.sha256(f"{user}\0{password}".encode()).digest()

    def known(self, user: str, password: str) -> bool:
        """True when these credentials checked out before."""
        return self._key(user, password) in self._good

    def add(self, user: str, password: str) -> None:
        """Remember credentials that checked out (the oldest forgotten when full)."""
        if len(self._good) >= self._capacity:
            self._good.pop(next(iter(self._good)))
        self._good[self._key(user, password)] = None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where} must be a mapping")
    return value


def _unknown(data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    extra = sorted(str(k) for k in set(data) - known)
    if extra:
        raise WebConfigError(f"{where}{extra[0]}: unknown or unsupported key")


def _tls(data: dict[str, Any], base: Path) -> TlsServer | None:
    if not data:
        return None
    _unknown(data, _TLS_KEYS, "tls_server_config.")
    if not data.get("cert_file") or not data.get("key_file"):
        raise WebConfigError("tls_server_config needs both cert_file and key_file")

    def path(key: str) -> Path | None:
        value = data.get(key)
        return None if value in (None, "") else base / str(value)

    auth_name = str(data.get("client_auth_type") or "NoClientCert")
    if auth_name not in _CLIENT_AUTH:
        raise WebConfigError(
            "tls_server_config.client_auth_type: one of " + ", ".join(_CLIENT_AUTH)
        )
    client_ca = path("client_ca_file")
    if _CLIENT_AUTH[auth_name] != ssl.CERT_NONE and client_ca is None:
        raise WebConfigError(
            f"tls_server_config: client_auth_type {auth_name} needs client_ca_file"
        )
    versions = {}
    for bound in ("min_version", "max_version"):
        name = data.get(bound)
        if name is not None and name not in _VERSIONS:
            raise WebConfigError(f"tls_server_config.{bound}: one of {', '.join(_VERSIONS)}")
        if name is not None:
            versions[bound] = _VERSIONS[name]
    cert_file, key_file = base / str(data["cert_file"]), base / str(data["key_file"])
    tls = TlsServer(cert_file, key_file, client_ca, _CLIENT_AUTH[auth_name], **versions)
    tls.context()  # every file loads now, at start, not at the first scrape
    return tls


def _users(data: dict[str, Any]) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in data.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError("basic_auth_users: a user name must be text without ':'")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"basic_auth_users.{user}: not a bcrypt hash")
        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            raise WebConfigError(f"basic_auth_users.{user}: not a bcrypt hash") from None
        users[user] = hashed.encode()
    return users


def load_web_config(path: Path) -> WebConfig:
    """Parse and check a web config file: every file it names loads, every hash is bcrypt.

    Raises:
        WebConfigError: one line naming the problem (never a hash or a key's content).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(f"cannot read {path}: {_reason(exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise WebConfigError(f"{path} is not valid YAML") from None
    data = _mapping(data, str(path))
    _unknown(data, _TOP_KEYS, "")
    http = _mapping(data.get("http_server_config"), "http_server_config")
    _unknown(http, _HTTP_KEYS, "http_server_config.")
    headers = _mapping(http.get("headers"), "http_server_config.headers")
    return WebConfig(
        tls=_tls(_mapping(data.get("tls_server_config"), "tls_server_config"), path.parent),
        users=_users(_mapping(data.get("basic_auth_users"), "basic_auth_users")),
        headers={str(k): str(v) for k, v in headers.items()},
    )
