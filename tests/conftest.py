"""Shared fixtures: one real Tansu broker per test session, and settings isolated per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from revmon.broker import EmbeddedBroker
from revmon.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _no_revmon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's REVMON_* variables."""
    for name in list(os.environ):
        if name.upper().startswith("REVMON_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """The real Tansu broker, started once for the whole session."""
    with EmbeddedBroker() as running:
        yield running


def isolated_settings(servers: str, **overrides: Any) -> Settings:
    """Settings on `servers` with topics and a group id of their own (no test sees another's)."""
    tag = uuid.uuid4().hex[:10]
    base: dict[str, Any] = {
        "broker": f"kafka://{servers}",
        "clock": "event",
        "partitions": 2,
        "topics": {
            "crm": f"t{tag}.crm",
            "marketing": f"t{tag}.marketing",
            "billing": f"t{tag}.billing",
            "dead_letter": f"t{tag}.dlq",
            "metrics": f"t{tag}.metrics",
            "alerts": f"t{tag}.alerts",
        },
        "worker": {
            "app_id": f"test-{tag}",
            "store": "memory",
            "session_timeout": "6s",
            "rebalance_timeout": "2s",
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(None, **base)


def require_tool(name: str) -> str:
    """The path of a system tool the test runs for real (a Debian package `make test` installs).

    Missing, it skips the test on a developer's machine and fails it in CI (`CI=true`),
    where no test may be skipped for a missing component.
    """
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (run `make system-deps`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
