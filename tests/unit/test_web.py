"""The HTTP endpoints under `web_config`: basic auth on every path but /healthz; never a 5xx."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from revmon.broker import free_port
from revmon.web import WebServer
from revmon.webconfig import WebConfig, WebConfigError, load_web_config

USER, PASSWORD = "scraper", "pa55-word"


class Served:
    """A WebServer running in its own thread and event loop, for plain-socket clients."""

    def __init__(self, config: WebConfig | None) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        server = WebServer("127.0.0.1", self.port, CollectorRegistry(), lambda: True, config)
        self._server = server
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(server.start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert started.wait(10)

    def request(self, raw: bytes) -> int | None:
        """The status code answered to a raw HTTP request (None: the connection was closed)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        if not data.startswith(b"HTTP/1."):
            return None
        return int(data.split(b" ", 2)[1])

    def close(self) -> None:
        """Stop the server and its loop."""
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def get(path: str, auth: str | None = None) -> bytes:
    """A raw GET of `path`, with an Authorization header when given."""
    header = f"Authorization: {auth}\r\n" if auth is not None else ""
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{header}Connection: close\r\n\r\n".encode()


def basic(user: str, password: str) -> str:
    """A basic-auth header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def web_config(tmp_path_factory: pytest.TempPathFactory) -> WebConfig:
    """A web config with one bcrypt user (cost 4: fast tests, same check)."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path_factory.mktemp("web") / "web.yml"
    path.write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    return load_web_config(path)


@pytest.fixture(scope="module")
def protected(web_config: WebConfig) -> Iterator[Served]:
    """The endpoints behind basic auth."""
    served = Served(web_config)
    yield served
    served.close()


@pytest.fixture(scope="module")
def open_server() -> Iterator[Served]:
    """The endpoints without a web config."""
    served = Served(None)
    yield served
    served.close()


@pytest.mark.parametrize(
    ("path", "auth", "status"),
    [
        pytest.param("/healthz", None, 200, id="healthz-open"),
        pytest.param("/metrics", None, 401, id="metrics-needs-auth"),
        pytest.param("/readyz", None, 401, id="readyz-needs-auth"),
        pytest.param("/nothing", None, 401, id="unknown-path-needs-auth"),
        pytest.param("/metrics", basic(USER, PASSWORD), 200, id="metrics-right-password"),
        pytest.param("/readyz", basic(USER, PASSWORD), 200, id="readyz-right-password"),
        pytest.param("/nothing", basic(USER, PASSWORD), 404, id="unknown-path-authenticated"),
        pytest.param("/metrics", basic(USER, "wrong"), 401, id="wrong-password"),
        pytest.param("/metrics", basic("nobody", PASSWORD), 401, id="unknown-user"),
        pytest.param("/metrics", basic(USER, PASSWORD.upper()), 401, id="case-matters"),
        pytest.param("/metrics", basic(USER, PASSWORD + "x" * 100), 401, id="over-72-bytes"),
        pytest.param("/metrics", basic(USER, "é" * 200), 401, id="long-non-ascii"),
        pytest.param("/metrics", "Bearer x", 401, id="other-scheme"),
        pytest.param("/metrics", "Basic !!!not-base64", 401, id="garbage-token"),
        pytest.param(
            "/metrics", "Basic " + base64.b64encode(b"nocolon").decode(), 401, id="no-colon"
        ),
        pytest.param("/metrics/", basic(USER, PASSWORD), 404, id="trailing-slash"),
        pytest.param("/healthz/../metrics", None, 401, id="dot-dot-is-not-healthz"),
    ],
)
def test_basic_auth_guards_every_path_but_healthz(
    protected: Served, path: str, auth: str | None, status: int
) -> None:
    """With basic_auth_users, only /healthz answers without the right credentials."""
    assert protected.request(get(path, auth)) == status


def test_an_unauthorized_answer_asks_for_basic_auth(protected: Served) -> None:
    """A 401 carries `WWW-Authenticate: Basic`, as exporter-toolkit answers."""
    with socket.create_connection(("127.0.0.1", protected.port), timeout=10) as sock:
        sock.sendall(get("/metrics"))
        answer = sock.recv(4096)
    assert b"WWW-Authenticate: Basic realm=" in answer


TOKEN = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    min_size=1,
    max_size=20,
)
HEADER_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\r\n"),
    max_size=200,
)
REQUEST = st.fixed_dictionaries(
    {
        "method": st.one_of(
            st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"]),
            TOKEN,
        ),
        "path": st.one_of(
            st.sampled_from(["/metrics", "/healthz", "/readyz", "/", "*"]),
            st.text(
                alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300
            ).map(lambda p: "/" + p),
        ),
        "headers": st.lists(st.tuples(TOKEN, HEADER_VALUE), max_size=8),
        "auth": st.one_of(
            st.none(),
            HEADER_VALUE,
            st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
            st.tuples(st.sampled_from([USER, "x"]), HEADER_VALUE).map(lambda t: basic(*t)),
            st.text(max_size=300).map(lambda p: basic(USER, PASSWORD + p)),
        ),
        "body": st.binary(max_size=2000),
    }
)


def raw_request(spec: dict[str, object]) -> bytes:
    """The bytes of a request built from a drawn spec (Content-Length matching the body)."""
    body = spec["body"]
    assert isinstance(body, bytes)
    lines = [f"{spec['method']} {spec['path']} HTTP/1.1", "Host: fuzz"]
    lines += [f"{name}: {value}" for name, value in spec["headers"]]  # type: ignore[attr-defined]
    if spec["auth"] is not None:
        lines.append(f"Authorization: {spec['auth']}")
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=REQUEST)
@pytest.mark.parametrize("which", ["protected", "open_server"])
def test_no_request_makes_the_endpoints_fail(
    which: str, spec: dict[str, object], request: pytest.FixtureRequest
) -> None:
    """Any method, path, headers, credentials and body: an answer, never a 5xx or a crash."""
    served: Served = request.getfixturevalue(which)

    status = served.request(raw_request(spec))

    assert status is None or status < 500, status
    assert served.request(get("/healthz")) == 200


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param("basic_auth_users:\n  u: plain\n", "basic_auth_users.u", id="plain-password"),
        pytest.param(
            "basic_auth_users:\n  u: '$2b$12$short'\n", "not a bcrypt hash", id="bad-hash"
        ),
        pytest.param("tls_server_config:\n  cert_file: c\n", "key_file", id="no-key"),
        pytest.param(
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Maybe\n",
            "client_auth_type",
            id="bad-client-auth",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: "
            "RequireAndVerifyClientCert\n",
            "needs client_ca_file",
            id="client-auth-without-ca",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: c\n  key_file: k\n", "cannot load", id="no-files"
        ),
        pytest.param("basic_auth_users: [a]\n", "must be a mapping", id="users-list"),
        pytest.param("http_server_config:\n  http2: true\n", "http2", id="unsupported"),
        pytest.param("- a\n", "must be a mapping", id="not-a-mapping"),
        pytest.param("a: [\n", "not valid YAML", id="broken-yaml"),
    ],
)
def test_a_web_config_that_cannot_be_honoured_is_an_error(
    tmp_path: Path, text: str, named: str
) -> None:
    """Every problem is a WebConfigError naming the key: never a silently open endpoint."""
    path = tmp_path / "web.yml"
    path.write_text(text)

    with pytest.raises(WebConfigError, match=named.replace("$", r"\$")):
        load_web_config(path)
