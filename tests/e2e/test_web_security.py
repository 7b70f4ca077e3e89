"""`web_config`: HTTPS and bcrypt basic auth on the endpoints, scraped by the real Prometheus."""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
import yaml

from revmon.broker import free_port
from tests.e2e.running import background, clean_env, poll, revmon, revmon_argv, tail
from tests.support.servers import Prometheus
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.e2e

USER = "prometheus"
PASSWORD = "scrape-pass-8c1f"


def write_web_config(directory: Path, pki: Pki) -> Path:
    """A Prometheus-style web config: TLS with the test certificate, one bcrypt user."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    path = directory / "web.yml"
    path.write_text(
        yaml.safe_dump(
            {
                # Relative paths: relative to the web config file, as in exporter-toolkit.
                "tls_server_config": {
                    "cert_file": str(pki.cert.relative_to(directory)),
                    "key_file": str(pki.key.relative_to(directory)),
                },
                "basic_auth_users": {USER: hashed},
            }
        )
    )
    return path


def get(url: str, context: ssl.SSLContext | None, auth: tuple[str, str] | None) -> int | None:
    """The status of a GET (None when nothing answers or TLS fails)."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=3, context=context) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def test_prometheus_scrapes_over_tls_with_basic_auth_and_a_wrong_password_is_down(
    tmp_path: Path,
) -> None:
    """Prometheus with `basic_auth` + `tls_config` scrapes revmon; a wrong password: target down."""
    pki = make_pki(tmp_path / "pki")
    web_config = write_web_config(tmp_path, pki)
    port = free_port()
    config = tmp_path / "revmon.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "web_port": port,
                "web_config": str(web_config),
                "worker": {"store": "memory", "data_dir": str(tmp_path / "data")},
            }
        )
    )
    base = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(pki.ca_cert))
    env = clean_env()
    with background(
        revmon_argv("run", "--config", str(config)), env=env, cwd=tmp_path, logs=tmp_path / "log"
    ) as daemon:

        def healthy() -> bool:
            if daemon.proc.poll() is not None:
                raise AssertionError(f"revmon run exited:\n{tail(daemon.stderr())}")
            return get(f"{base}/healthz", trusted, None) == 200

        poll(healthy, within=40, what="/healthz over TLS without credentials")
        assert get(f"{base}/metrics", trusted, None) == 401
        assert get(f"{base}/readyz", trusted, (USER, "wrong")) == 401
        assert get(f"{base}/metrics", trusted, (USER, PASSWORD)) == 200
        assert get(f"{base}/no-such-path", trusted, None) == 401
        assert get(f"{base}/metrics", ssl.create_default_context(), (USER, PASSWORD)) is None
        assert get(f"http://127.0.0.1:{port}/healthz", None, None) is None

        def job(name: str, password: str) -> dict[str, object]:
            return {
                "job_name": name,
                "scheme": "https",
                "basic_auth": {"username": USER, "password": password},
                "tls_config": {"ca_file": str(pki.ca_cert)},
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }

        prometheus = Prometheus(
            tmp_path,
            [],
            [],
            jobs=[job("revmon", PASSWORD), job("revmon-wrong-password", "not-the-password")],
        )
        try:
            poll(
                lambda: (
                    prometheus.target_health() == {"revmon": "up", "revmon-wrong-password": "down"}
                ),
                within=30,
                interval=0.5,
                what="the right job up and the wrong-password job down",
            )
            scraped = poll(
                lambda: prometheus.query('revmon_build_info{job="revmon"}'),
                within=20,
                interval=0.5,
                what="revmon_build_info scraped by Prometheus",
            )
            assert scraped[0]["metric"]["job"] == "revmon"
            assert not prometheus.query('up{job="revmon-wrong-password"} == 1')
        finally:
            prometheus.stop()


@pytest.mark.parametrize(
    ("web_config", "named"),
    [
        pytest.param("basic_auth_users:\n  u: plaintext\n", "not a bcrypt hash", id="not-bcrypt"),
        pytest.param("tls_server_config:\n  cert_file: nope.crt\n", "key_file", id="no-key"),
        pytest.param(
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            "cannot load",
            id="missing-cert",
        ),
        pytest.param("basic_auth_user:\n  u: x\n", "basic_auth_user", id="typo-key"),
        pytest.param(None, "cannot read", id="missing-file"),
    ],
)
def test_a_web_config_that_cannot_be_used_fails_start_naming_it(
    tmp_path: Path, web_config: str | None, named: str
) -> None:
    """`revmon run` with a bad web_config exits 2 with one line naming web_config, never serving."""
    path = tmp_path / "web.yml"
    if web_config is not None:
        path.write_text(web_config)
    config = tmp_path / "revmon.yml"
    config.write_text(yaml.safe_dump({"web_port": free_port(), "web_config": str(path)}))

    result = revmon("run", "--config", str(config), cwd=tmp_path, timeout=30)

    assert result.code == 2, result.stderr
    assert "web_config" in result.stderr
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
