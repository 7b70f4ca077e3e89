"""The real Prometheus (Debian package) on a loopback port, scraping revmon workers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from revmon.broker import free_port


def binary(name: str) -> str:
    """The path of a Prometheus tool; skipped when missing, except in CI where it must be."""
    debian = Path("/usr/bin") / name
    found = shutil.which(name) or (str(debian) if debian.exists() else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (`make test` installs the prometheus package)")
        pytest.skip(f"{name} is not installed")
    return found


class Prometheus:
    """A Prometheus server scraping `targets` every second, with its HTTP API."""

    def __init__(self, tmp: Path, targets: list[str], started: list[subprocess.Popen[bytes]]):
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "revmon", "static_configs": [{"targets": targets}]},
            ],
        }
        path = tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={path}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(process)
        deadline = time.monotonic() + 30
        while not self._ready():
            assert process.poll() is None, "prometheus exited at start"
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                return True
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises on an error status."""
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise AssertionError(f"{params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar as one sample) of `expr` now."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, metric: str) -> list[str]:
        """Every value of `label` on series of `metric` (what a `label_values` variable lists)."""
        values: list[str] = self.api(f"label/{label}/values", **{"match[]": metric})
        return values

    def wait(self, expr: str, limit: float = 60) -> list[dict[str, Any]]:
        """Poll until `expr` returns something."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"prometheus: no data for {expr} within {limit:g}s")
