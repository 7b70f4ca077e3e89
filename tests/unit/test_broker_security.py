"""SPEC §9: the `kafka:` settings reach every Kafka client revmon opens, identically."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from revmon import app as app_module
from revmon.broker import Connection
from revmon.settings import Settings, load_settings
from tests.support.tls import Pki, make_pki

PASSWORD = "sasl-pass-do-not-leak-2b"
REVMON = Path(app_module.__file__).parent


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a certificate (used as the client certificate here)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _settings(protocol: str, mechanism: str | None, pki: Pki, tmp_path: Path) -> Settings:
    kafka: dict[str, Any] = {"security_protocol": protocol}
    if mechanism is not None:
        kafka |= {"sasl_mechanism": mechanism, "sasl_username": "revmon"}
        kafka["sasl_password"] = PASSWORD
    if protocol.endswith("SSL"):
        kafka |= {
            "ssl_cafile": str(pki.ca_cert),
            "ssl_certfile": str(pki.cert),
            "ssl_keyfile": str(pki.key),
        }
    return load_settings(
        None,
        broker="kafka://k1:9092,k2:9092",
        kafka=kafka,
        worker={"store": "memory", "data_dir": str(tmp_path)},
    )


def _comparable(options: dict[str, Any]) -> dict[str, Any]:
    """Client options with the TLS context reduced to what it enforces."""
    result = {k: v for k, v in options.items() if v is not None and k != "bootstrap_servers"}
    context = result.pop("ssl_context", None)
    if context is not None:
        assert isinstance(context, ssl.SSLContext)
        result["ssl"] = (context.verify_mode, context.check_hostname)
    return result


CASES = [
    pytest.param("PLAINTEXT", None, id="plaintext"),
    pytest.param("SSL", None, id="ssl"),
    pytest.param("SASL_PLAINTEXT", "PLAIN", id="sasl-plaintext-plain"),
    pytest.param("SASL_PLAINTEXT", "SCRAM-SHA-256", id="sasl-plaintext-scram-256"),
    pytest.param("SASL_SSL", "SCRAM-SHA-512", id="sasl-ssl-scram-512"),
    pytest.param("SASL_SSL", "PLAIN", id="sasl-ssl-plain"),
]


@pytest.mark.parametrize(("protocol", "mechanism"), CASES)
def test_faust_and_aiokafka_clients_get_the_same_security(
    protocol: str, mechanism: str | None, pki: Pki, tmp_path: Path
) -> None:
    """Faust's consumers and producers and revmon's own clients: one protocol, same creds."""
    settings = _settings(protocol, mechanism, pki, tmp_path)
    connection = Connection(settings.bootstrap_servers or "", settings.kafka)

    ours = _comparable(connection.aiokafka_options())
    revmon = app_module.build(settings, connection)
    conf = revmon.app.conf
    faust = _comparable(
        dict(faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))
    )

    assert faust == ours
    assert ours["security_protocol"] == protocol
    if mechanism is not None:
        assert ours["sasl_mechanism"] == mechanism
        assert ours["sasl_plain_username"] == "revmon"
        assert ours["sasl_plain_password"] == PASSWORD
    if protocol.endswith("SSL"):
        assert ours["ssl"] == (ssl.CERT_REQUIRED, True)
    else:
        assert "ssl" not in ours
    assert [str(u) for u in conf.broker] == ["kafka://k1:9092", "kafka://k2:9092"]
    assert PASSWORD not in repr(conf.broker_credentials)


def _client_calls() -> list[tuple[str, int, ast.Call]]:
    """Every call of an aiokafka client class in revmon's source."""
    names = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
    calls = []
    for path in sorted(REVMON.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in names:
                calls.append((path.name, node.lineno, node))
    return calls


def test_every_aiokafka_client_is_built_from_the_connection_options() -> None:
    """Each producer, consumer and admin client takes `**...aiokafka_options()` (or the probe's)."""
    calls = _client_calls()
    assert len(calls) >= 8, calls
    for name, line, call in calls:
        spread = [kw.value for kw in call.keywords if kw.arg is None]
        sources = {ast.unparse(value) for value in spread}
        assert spread, f"{name}:{line} builds a client without the connection options"
        assert all(
            "aiokafka_options()" in source or source in {"options", "settings"}
            for source in sources
        ), f"{name}:{line}: {sources}"
