"""SPEC §9: a known secret never shows, whatever happens: logs, errors, outputs, topics."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from revmon.broker import EmbeddedBroker, free_port
from tests.e2e.running import (
    Result,
    background,
    clean_env,
    http_get,
    poll,
    revmon,
    revmon_argv,
    sample,
    tail,
)

pytestmark = pytest.mark.e2e

SECRET = "Zq9-never-leak-4c7e1"
SASL = {
    "security_protocol": "SASL_PLAINTEXT",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "revmon",
}


def assert_hidden(*texts: str | bytes) -> None:
    """None of `texts` contains the secret, as text or base64 (as in a basic-auth header)."""
    encoded = base64.b64encode(f"revmon:{SECRET}".encode()).decode()
    for text in texts:
        value = text.decode(errors="replace") if isinstance(text, bytes) else text
        assert SECRET not in value
        assert encoded not in value


def assert_result_hidden(result: Result) -> None:
    """Neither stream of a finished command contains the secret."""
    assert_hidden(result.stdout, result.stderr)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A file holding the secret, as a mounted Kubernetes or Docker secret does."""
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    return path


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    """The config file of a test."""
    path = tmp_path / "revmon.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("config", id="in-config"),
        pytest.param("env", id="revmon-variables"),
        pytest.param("file", id="password-files"),
    ],
)
def test_check_config_masks_every_secret(where: str, tmp_path: Path, secret_file: Path) -> None:
    """`check-config` prints the effective config with both passwords masked."""
    config: dict[str, Any] = {
        "broker": "kafka://kafka-1:9092",
        "kafka": dict(SASL),
        "alertmanager_url": "http://127.0.0.1:9093",
        "alertmanager_username": "revmon",
    }
    env = clean_env()
    if where == "config":
        config["kafka"]["sasl_password"] = SECRET
        config["alertmanager_password"] = SECRET
    elif where == "env":
        env |= {"REVMON_KAFKA__SASL_PASSWORD": SECRET, "REVMON_ALERTMANAGER_PASSWORD": SECRET}
    else:
        config["kafka"]["sasl_password_file"] = str(secret_file)
        config["alertmanager_password_file"] = str(secret_file)
    path = write_config(tmp_path, config)

    result = revmon("check-config", "--config", str(path), "--log-level", "DEBUG", env=env)

    assert result.code == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["kafka"]["sasl_password"] == "********"
    assert shown["alertmanager_password"] == "********"
    assert_result_hidden(result)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            {"broker": "kafka://k:9092", "kafka": {**SASL, "sasl_password": SECRET}, "clock": "x"},
            id="other-key-invalid",
        ),
        pytest.param({"kafka": {"sasl_password": SECRET}}, id="password-without-sasl"),
        pytest.param(
            {
                "broker": "kafka://k:9092",
                "kafka": {"security_protocol": "SASL_SSL", "sasl_password": SECRET},
            },
            id="sasl-incomplete",
        ),
        pytest.param({"broker": f"kafka://revmon:{SECRET}@k:9092"}, id="broker-userinfo"),
        pytest.param(
            {"alertmanager_url": f"http://revmon:{SECRET}@127.0.0.1:9093"}, id="am-userinfo"
        ),
        pytest.param({"alertmanager_url": f"http://127.0.0.1:{SECRET}"}, id="am-url-garbage-port"),
        pytest.param({"alertmanager_password": [SECRET]}, id="password-wrong-type"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run", "replay"])
def test_an_invalid_config_never_shows_the_secret(
    config: dict[str, Any], command: str, tmp_path: Path
) -> None:
    """A config error (exit 2, one line) never repeats the secret it was given."""
    path = write_config(tmp_path, config)
    argv = [command] + (["/dev/null"] if command == "replay" else [])

    result = revmon(*argv, "--config", str(path), "--log-level", "DEBUG", timeout=30)

    assert result.code == 2, result.stderr
    assert_result_hidden(result)


@pytest.fixture(scope="module")
def plaintext_broker() -> Iterator[EmbeddedBroker]:
    """A broker that does not speak SASL: the handshake fails, as against a wrong cluster."""
    with EmbeddedBroker() as running:
        yield running


@pytest.mark.parametrize("target", ["closed-port", "broker-without-sasl"])
@pytest.mark.parametrize("where", ["config", "env", "file"])
def test_a_failed_connection_never_shows_the_secret(
    target: str,
    where: str,
    plaintext_broker: EmbeddedBroker,
    tmp_path: Path,
    secret_file: Path,
) -> None:
    """`produce` with SASL credentials that cannot be used fails without showing them."""
    servers = (
        f"127.0.0.1:{free_port()}"
        if target == "closed-port"
        else plaintext_broker.bootstrap_servers
    )
    kafka: dict[str, Any] = dict(SASL)
    env = clean_env()
    if where == "config":
        kafka["sasl_password"] = SECRET
    elif where == "env":
        env["REVMON_KAFKA__SASL_PASSWORD"] = SECRET
    else:
        kafka["sasl_password_file"] = str(secret_file)
    # A closed port is waited for (`broker_wait`); a short wait keeps the test short.
    config = {"broker": f"kafka://{servers}", "kafka": kafka, "broker_wait": "3s"}
    path = write_config(tmp_path, config)
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1"}\n')

    result = revmon(
        "produce", str(events), "--config", str(path), "--log-level", "DEBUG", env=env, timeout=90
    )

    assert result.code != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert_result_hidden(result)


class BasicAuthAlertmanager:
    """A stand-in Alertmanager that records the Authorization header of every POST."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.bodies: list[Any] = []
        seen, bodies = self.authorizations, self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                seen.append(self.headers.get("Authorization", ""))
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


async def read_all(servers: str, topic: str) -> list[Any]:
    """Every record of `topic` up to its end offsets at the time of the call."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(position >= ends[tp] for position, tp in zip(positions, tps, strict=True)):
                break
            batch = await consumer.getmany(*tps, timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
        return records
    finally:
        await consumer.stop()


def test_a_running_daemon_never_shows_the_alertmanager_secret(
    broker: EmbeddedBroker, tmp_path: Path, secret_file: Path
) -> None:
    """The password reaches Alertmanager, and nowhere else: logs, /metrics, the three topics."""
    alertmanager = BasicAuthAlertmanager()
    tag = tmp_path.name[-12:].replace("_", "-")
    topics = {
        name: f"secrets-{tag}.{name}"
        for name in ("crm", "marketing", "billing", "dead_letter", "metrics", "alerts")
    }
    port = free_port()
    config = {
        "broker": f"kafka://{broker.bootstrap_servers}",
        "partitions": 2,
        "topics": topics,
        "web_port": port,
        "alerts_interval": "1s",
        "publish_interval": "1s",
        "alertmanager_url": alertmanager.url,
        "alertmanager_username": "revmon",
        "alertmanager_password_file": str(secret_file),
        "worker": {"app_id": f"secrets-{tag}", "store": "memory", "session_timeout": "6s"},
        "alerts": [
            {
                "name": "LeadsOpen",
                "metric": "revmon_funnel_open",
                "labels": {"funnel": "lead"},
                "op": ">",
                "threshold": 0,
                "summary": "{{ value }} open leads in {{ labels.stage }}",
            }
        ],
    }
    path = write_config(tmp_path, config)
    events = tmp_path / "events.jsonl"
    lead = {"type": "lead.created", "occurred_at": "2026-11-02T10:00:00Z", "lead_id": "L1"}
    events.write_text(
        json.dumps({**lead, "event_id": "e1"}) + "\n"
        + json.dumps({**lead, "event_id": "e2", "stage": "nope"}) + "\nnot json\n"
    )  # fmt: skip
    argv = revmon_argv("run", "--config", str(path), "--log-level", "DEBUG")
    try:
        with background(argv, env=clean_env(), cwd=tmp_path, logs=tmp_path / "log") as daemon:
            produced = revmon("produce", str(events), "--config", str(path), timeout=60)
            assert produced.code == 0, produced.stderr[-2000:]
            assert_result_hidden(produced)

            def done() -> str | None:
                if daemon.proc.poll() is not None:
                    raise AssertionError(f"revmon run exited:\n{tail(daemon.stderr())}")
                answer = http_get(f"http://127.0.0.1:{port}/metrics")
                if answer is None or not alertmanager.authorizations:
                    return None
                rejected = sample(answer[1], "revmon_events_rejected_total", reason="invalid_field")
                return answer[1] if rejected == 1 else None

            exposition = poll(done, within=60, interval=0.3, what="rejections and an alert sent")
            daemon.proc.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            logs = daemon.stdout() + daemon.stderr()
    finally:
        alertmanager.close()

    expected = "Basic " + base64.b64encode(f"revmon:{SECRET}".encode()).decode()
    assert set(alertmanager.authorizations) == {expected}
    assert "event_rejected" in logs
    assert_hidden(exposition, logs, json.dumps(alertmanager.bodies))
    for name in ("metrics", "alerts", "dead_letter"):
        records = asyncio.run(read_all(broker.bootstrap_servers, topics[name]))
        assert records, name
        for record in records:
            assert_hidden(record.key or b"", record.value or b"")
            for header, value in record.headers or ():
                assert_hidden(header, value)
