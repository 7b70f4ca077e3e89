"""The real Prometheus and Alertmanager (Debian packages) and a webhook receiver, on loopback."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from revmon.broker import free_port
from tests.conftest import require_tool


def wait_for(condition: Callable[[], Any], limit: float, what: str, poll: float = 0.2) -> Any:
    """Poll until `condition()` is truthy (returning it), or fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {limit:g}s")


def get_json(url: str) -> Any:
    """GET a JSON document, or None when the server does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return json.loads(reply.read())
    except OSError:
        return None


def answers(url: str) -> bool:
    """True when a GET of `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


class Webhook:
    """An HTTP server that records every JSON body posted to it (Alertmanager's receiver)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def alerts(self, alertname: str, status: str) -> list[dict[str, Any]]:
        """Every alert of that name and status the receiver got."""
        return [
            alert
            for body in list(self.bodies)
            for alert in body.get("alerts", [])
            if alert["labels"].get("alertname") == alertname and alert["status"] == status
        ]

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


class Alertmanager:
    """Alertmanager routing every alert to a webhook, within a second, resolved ones too."""

    def __init__(self, workdir: Path, webhook: Webhook) -> None:
        self._binary = require_tool("prometheus-alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._workdir = workdir
        self._config = workdir / "alertmanager.yml"
        config = {
            "route": {
                "receiver": "test",
                "group_by": ["..."],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}
            ],
        }
        self._config.write_text(yaml.safe_dump(config))
        self._proc: subprocess.Popen[bytes] | None = None
        self._runs = 0

    def start(self) -> None:
        """Start and wait until ready."""
        self._runs += 1
        with (self._workdir / "alertmanager.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    self._binary,
                    f"--config.file={self._config}",
                    f"--storage.path={self._workdir / f'am-data-{self._runs}'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=log,
            )
        wait_for(lambda: answers(f"{self.url}/-/ready"), 30, "alertmanager ready")

    def stop(self) -> None:
        """Stop (and wait)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)


class Prometheus:
    """Prometheus scraping revmon workers every second and evaluating rule files.

    `jobs` replaces the one plain `revmon` job by scrape configs of the caller's own (each
    a `scrape_config` mapping, e.g. with `scheme: https`, `basic_auth` and `tls_config`).
    """

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        rule_files: list[Path],
        *,
        jobs: list[dict[str, Any]] | None = None,
    ) -> None:
        binary = require_tool("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        scrape_configs = jobs or [{"job_name": "revmon", "static_configs": [{"targets": targets}]}]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": scrape_configs,
        }
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        with (workdir / "prometheus.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={workdir / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=log,
            )
        wait_for(lambda: answers(f"{self.url}/-/ready"), 30, "prometheus ready")

    def target_health(self) -> dict[str, str]:
        """`up`, `down` or `unknown` of every active target, by job name."""
        reply = get_json(f"{self.url}/api/v1/targets") or {}
        targets = reply.get("data", {}).get("activeTargets", [])
        return {t["labels"]["job"]: t["health"] for t in targets}

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of a PromQL expression (empty when Prometheus cannot answer)."""
        query = urllib.parse.urlencode({"query": expr})
        reply = get_json(f"{self.url}/api/v1/query?{query}") or {}
        result: list[dict[str, Any]] = reply.get("data", {}).get("result", [])
        return result

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        """Prometheus' firing alerts of that name."""
        reply = get_json(f"{self.url}/api/v1/alerts") or {}
        alerts = reply.get("data", {}).get("alerts", [])
        return [
            a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        ]

    def stop(self) -> None:
        """Stop (and wait)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
