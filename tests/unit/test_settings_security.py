"""SPEC §9: the security settings are checked as a whole, and secrets come from three places."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from revmon.errors import ConfigError
from revmon.settings import load_settings, masked
from tests.support.tls import make_pki

SECRET = "s3cr3t-never-shown-71f0"
CLUSTER = "kafka://kafka-1:9092"


def _error(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(None, **overrides)
    return str(info.value)


@pytest.mark.parametrize(
    ("kafka", "named"),
    [
        pytest.param({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism", id="sasl-no-mech"),
        pytest.param(
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "needs sasl_username",
            id="sasl-no-user",
        ),
        pytest.param(
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": "u",
            },
            "needs sasl_password",
            id="sasl-no-password",
        ),
        pytest.param(
            {"security_protocol": "SSL", "sasl_mechanism": "PLAIN"},
            "sasl_mechanism is set but security_protocol SSL",
            id="mechanism-without-sasl",
        ),
        pytest.param(
            {"sasl_username": "u"}, "security_protocol PLAINTEXT does not use SASL", id="user"
        ),
        pytest.param({"sasl_password": SECRET}, "sasl_password is set", id="password-plaintext"),
        pytest.param(
            {"ssl_cafile": "/etc/ssl/certs/ca-certificates.crt"},
            "ssl_cafile is set but security_protocol PLAINTEXT does not use TLS",
            id="cafile-plaintext",
        ),
        pytest.param(
            {"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"},
            "ssl_cafile",
            id="cafile-missing",
        ),
        pytest.param(
            {"security_protocol": "SSL", "ssl_keyfile": "/nonexistent/k.pem"},
            "ssl_keyfile needs ssl_certfile",
            id="key-without-cert",
        ),
        pytest.param(
            {"security_protocol": "SSL", "ssl_verify": False}, "ssl_verify: unknown key", id="off"
        ),
        pytest.param(
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": SECRET,
                "sasl_password_file": "/nonexistent",
            },
            "not both",
            id="password-twice",
        ),
    ],
)
def test_inconsistent_kafka_security_is_a_config_error(kafka: dict[str, Any], named: str) -> None:
    """A weaker or half-configured Kafka connection is refused at start, naming the key."""
    message = _error(broker=CLUSTER, kafka=kafka)

    assert named in message
    assert message.startswith("invalid config: kafka")
    assert SECRET not in message


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        pytest.param(
            {"broker": f"kafka://admin:{SECRET}@kafka-1:9092"}, "broker", id="broker-userinfo"
        ),
        pytest.param(
            {"alertmanager_url": f"http://admin:{SECRET}@am:9093"},
            "alertmanager_url: credentials do not belong in the URL",
            id="alertmanager-userinfo",
        ),
        pytest.param(
            {"alertmanager_url": "http://am:9093", "alertmanager_password": SECRET},
            "alertmanager_username",
            id="alertmanager-no-user",
        ),
        pytest.param(
            {"alertmanager_url": "http://am:9093", "alertmanager_username": "u"},
            "alertmanager_password",
            id="alertmanager-no-password",
        ),
        pytest.param(
            {"alertmanager_username": "u", "alertmanager_password": SECRET},
            "alertmanager_url",
            id="alertmanager-no-url",
        ),
        pytest.param(
            {"kafka": {"security_protocol": "SSL"}},
            "the embedded broker speaks PLAINTEXT",
            id="embedded-tls",
        ),
        pytest.param({"web_config": "/nonexistent/web.yml"}, "web_config", id="web-config-missing"),
    ],
)
def test_config_checked_as_a_whole(overrides: dict[str, Any], named: str) -> None:
    """Credentials in URLs, half credentials, TLS for the embedded broker: config errors."""
    message = _error(**overrides)

    assert named in message
    assert SECRET not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        pytest.param("SASL_PLAINTEXT", "PLAIN", id="sasl-plain"),
        pytest.param("SASL_SSL", "SCRAM-SHA-256", id="scram-256"),
        pytest.param("SASL_SSL", "SCRAM-SHA-512", id="scram-512"),
    ],
)
def test_every_sasl_mechanism_is_accepted_with_its_credentials(
    protocol: str, mechanism: str
) -> None:
    """SASL PLAIN and SCRAM-SHA-256/512 over plaintext or TLS, with user and password."""
    kafka = {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_username": "revmon",
        "sasl_password": SECRET,
    }
    settings = load_settings(None, broker=CLUSTER, kafka=kafka)

    assert settings.kafka.sasl_mechanism == mechanism
    assert SECRET not in json.dumps(masked(settings))


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("config", id="config-file"),
        pytest.param("env", id="revmon-variable"),
        pytest.param("file", id="password-file"),
        pytest.param("env-file", id="revmon-variable-naming-the-file"),
    ],
)
def test_every_secret_comes_from_config_env_or_file(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka and Alertmanager passwords: config key, REVMON_* variable or `*_file`; masked."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"{SECRET}\n")
    kafka: dict[str, Any] = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "revmon",
    }
    config: dict[str, Any] = {
        "broker": CLUSTER,
        "kafka": kafka,
        "alertmanager_url": "http://am:9093",
        "alertmanager_username": "revmon",
    }
    if source == "config":
        kafka["sasl_password"] = SECRET
        config["alertmanager_password"] = SECRET
    elif source == "file":
        kafka["sasl_password_file"] = str(secret_file)
        config["alertmanager_password_file"] = str(secret_file)
    elif source == "env":
        monkeypatch.setenv("REVMON_KAFKA__SASL_PASSWORD", SECRET)
        monkeypatch.setenv("REVMON_ALERTMANAGER_PASSWORD", SECRET)
    else:
        monkeypatch.setenv("REVMON_KAFKA__SASL_PASSWORD_FILE", str(secret_file))
        monkeypatch.setenv("REVMON_ALERTMANAGER_PASSWORD_FILE", str(secret_file))
    path = tmp_path / "revmon.yml"
    path.write_text(json.dumps(config))

    settings = load_settings(path)

    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == SECRET
    assert settings.alertmanager_auth == ("revmon", SECRET)
    assert SECRET not in json.dumps(masked(settings))
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_tls_files_are_loaded_at_start(tmp_path: Path) -> None:
    """With SSL, the CA and a client certificate load into a verifying context at start."""
    pki = make_pki(tmp_path)
    kafka = {
        "security_protocol": "SSL",
        "ssl_cafile": str(pki.ca_cert),
        "ssl_certfile": str(pki.cert),
        "ssl_keyfile": str(pki.key),
    }
    settings = load_settings(None, broker=CLUSTER, kafka=kafka)

    context = settings.kafka.ssl_context()
    assert context is not None
    assert context.check_hostname
    assert context.verify_mode.name == "CERT_REQUIRED"


def test_a_client_key_that_does_not_match_is_a_config_error(tmp_path: Path) -> None:
    """A client key that does not belong to the certificate fails start, naming the keys."""
    pki = make_pki(tmp_path / "a")
    other = make_pki(tmp_path / "b")
    kafka = {
        "security_protocol": "SSL",
        "ssl_cafile": str(pki.ca_cert),
        "ssl_certfile": str(pki.cert),
        "ssl_keyfile": str(other.key),
    }

    assert "ssl_certfile/ssl_keyfile" in _error(broker=CLUSTER, kafka=kafka)
