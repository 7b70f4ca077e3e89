"""Kafka over TLS for real: stunnel4 in front of the embedded broker, which advertises its port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from revmon.broker import EmbeddedBroker, free_port
from tests.e2e.running import Result, revmon, sample
from tests.support.tls import Pki, Stunnel, make_pki

pytestmark = pytest.mark.e2e

EVENTS = [
    {
        "event_id": f"e{i}",
        "type": "lead.created",
        "occurred_at": f"2026-11-0{1 + i % 9}T10:00:00Z",
        "lead_id": f"L{i}",
        "channel": "email",
    }
    for i in range(30)
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The CA and the certificate stunnel presents for 127.0.0.1."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of the embedded broker reachable only through TLS (stunnel4)."""
    tls_port = free_port()
    with EmbeddedBroker(advertised=f"127.0.0.1:{tls_port}") as broker:
        workdir = tmp_path_factory.mktemp("stunnel")
        stunnel = Stunnel(workdir, pki, broker.port, tls_port).start()
        try:
            yield f"127.0.0.1:{tls_port}"
        finally:
            stunnel.stop()


@pytest.fixture(scope="module")
def mtls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pki]]:
    """A broker behind stunnel requiring a client certificate, and the PKI that signs clients."""
    clients = make_pki(tmp_path_factory.mktemp("client-pki"), name="clients")
    tls_port = free_port()
    with EmbeddedBroker(advertised=f"127.0.0.1:{tls_port}") as broker:
        workdir = tmp_path_factory.mktemp("stunnel-mtls")
        stunnel = Stunnel(workdir, pki, broker.port, tls_port, client_ca=clients.ca_cert).start()
        try:
            yield f"127.0.0.1:{tls_port}", clients
        finally:
            stunnel.stop()


def _replay(
    tmp_path: Path,
    servers: str,
    cafile: Path,
    timeout: float = 90,
    client: Pki | None = None,
) -> Result:
    events = tmp_path / "events.jsonl"
    lines = [json.dumps(e) for e in EVENTS] + ["not json at all"]
    events.write_text("\n".join(lines) + "\n")
    config = tmp_path / "revmon.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "broker": f"kafka://{servers}",
                "partitions": 2,
                "broker_wait": "10s",  # a refused handshake that looks like a broker not up yet
                "kafka": {
                    "security_protocol": "SSL",
                    "ssl_cafile": str(cafile),
                    **(
                        {"ssl_certfile": str(client.cert), "ssl_keyfile": str(client.key)}
                        if client is not None
                        else {}
                    ),
                },
            }
        )
    )
    out = tmp_path / "final.prom"
    return revmon(
        "replay", str(events), "--config", str(config), "--metrics-out", str(out),
        cwd=tmp_path, timeout=timeout,
    )  # fmt: skip


def test_replay_produces_and_consumes_through_a_tls_terminator(
    tls_broker: str, pki: Pki, tmp_path: Path
) -> None:
    """With `security_protocol: SSL` and `ssl_cafile`, every client works through stunnel."""
    result = _replay(tmp_path, tls_broker, pki.ca_cert)

    assert result.code == 0, result.stderr[-3000:]
    exposition = (tmp_path / "final.prom").read_text()
    assert sample(exposition, "revmon_events_total", type="lead.created") == len(EVENTS)
    assert sample(exposition, "revmon_events_rejected_total", reason="malformed_json") == 1


def test_a_broker_whose_certificate_does_not_verify_is_refused(
    tls_broker: str, tmp_path: Path
) -> None:
    """Against a CA that did not sign the broker's certificate, revmon stops with one line."""
    stranger = make_pki(tmp_path / "other-ca")

    result = _replay(tmp_path, tls_broker, stranger.ca_cert, timeout=120)

    assert result.code != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("revmon: TLS with the broker at"), last
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "final.prom").exists()


def test_a_client_certificate_opens_a_broker_that_requires_one(
    mtls_broker: tuple[str, Pki], pki: Pki, tmp_path: Path
) -> None:
    """Mutual TLS: with `ssl_certfile`/`ssl_keyfile` every client gets through stunnel."""
    servers, clients = mtls_broker

    result = _replay(tmp_path, servers, pki.ca_cert, client=clients)

    assert result.code == 0, result.stderr[-3000:]
    exposition = (tmp_path / "final.prom").read_text()
    assert sample(exposition, "revmon_events_total", type="lead.created") == len(EVENTS)


def test_without_a_client_certificate_a_mutual_tls_broker_is_out_of_reach(
    mtls_broker: tuple[str, Pki], pki: Pki, tmp_path: Path
) -> None:
    """The same broker without a client certificate: revmon stops, nothing replayed."""
    servers, _ = mtls_broker

    result = _replay(tmp_path, servers, pki.ca_cert, timeout=120)

    assert result.code != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("revmon: TLS with the broker at", "revmon: the broker at")), last
    assert not (tmp_path / "final.prom").exists()
