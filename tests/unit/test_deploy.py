"""The deployment files: the Dockerfile lints clean, the compose file and the Kubernetes
manifests validate against their schemas, Prometheus and Alertmanager accept their configs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.prometheus import binary as prometheus_binary

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE = REPO / "docker-compose.yml"
RULES = DEPLOY / "prometheus" / "revmon-rules.yml"


def tool(name: str) -> str:
    """A validation tool: from the virtual environment (dev extra) or the system's PATH.

    Missing is a failure in CI (`CI=true`) and a skip on a workstation without it.
    """
    venv = Path(sys.executable).parent / name
    found = str(venv) if venv.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: `make install` (dev extra) or `make test` installs it")
        pytest.skip(f"{name} is not installed")
    return found


def check(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a validator; the completed process (its output explains a failure)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def compose() -> dict[str, Any]:
    """docker-compose.yml, YAML anchors and merge keys resolved."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_dockerfile_lints_clean() -> None:
    """hadolint finds nothing in the Dockerfile."""
    result = check(tool("hadolint"), str(REPO / "Dockerfile"))

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_pinned_non_root_with_state_on_a_volume() -> None:
    """Two stages on a pinned base, a numeric non-root user, /var/lib/revmon a volume."""
    text = (REPO / "Dockerfile").read_text()

    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'VOLUME ["/var/lib/revmon"]' in text
    assert "--require-hashes" in text


def test_compose_file_validates_against_the_compose_specification() -> None:
    """docker-compose.yml is valid per the Compose Specification's JSON Schema."""
    result = check(
        tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_stack_has_every_service_healthchecked_and_named_volumes() -> None:
    """The stack's services, KRaft, read-only workers, mounts, healthchecks, named volumes."""
    data = compose()
    services = data["services"]

    assert set(services) == {
        *("kafka", "revmon-1", "revmon-2", "simulator"),
        *("prometheus", "alertmanager", "grafana"),
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name, service in services.items():
        image = service.get("image", "")
        assert re.search(r":v?\d[\w.\-]*$", image), f"{name}: image not pinned: {image}"
        if name != "simulator":  # a feed, not a server: nothing to probe
            assert "test" in service["healthcheck"], name
    for worker in ("revmon-1", "revmon-2"):
        assert services[worker]["read_only"] is True
        assert any(v.endswith(":/var/lib/revmon") for v in services[worker]["volumes"])
    prometheus = services["prometheus"]["volumes"]
    assert "./deploy/prometheus/revmon-rules.yml:/etc/prometheus/revmon-rules.yml:ro" in prometheus
    grafana = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/revmon:ro" in grafana
    named = {
        v.split(":")[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if not v.startswith(".")
    }
    assert named == set(data["volumes"])


def test_grafana_provisioning_points_where_compose_mounts_the_dashboards() -> None:
    """The dashboard provider reads the directory compose mounts grafana/dashboards on."""
    provider = yaml.safe_load((REPO / "grafana/provisioning/dashboards/revmon.yml").read_text())
    datasource = yaml.safe_load(
        (REPO / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )

    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/revmon"
    assert datasource["datasources"][0]["type"] == "prometheus"
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.name for m in MANIFESTS])
def test_kubernetes_manifest_validates_against_the_kubernetes_schemas(manifest: Path) -> None:
    """Each manifest is valid (strict: no unknown field) per the Kubernetes schemas."""
    result = check(tool("kubernetes-validate"), "--strict", "--quiet", str(manifest))

    assert result.returncode == 0, result.stdout + result.stderr


def test_statefulset_keeps_state_runs_non_root_read_only_and_is_scraped() -> None:
    """State on a claim per pod, non-root, read-only root, prometheus.io annotations."""
    statefulset = yaml.safe_load((DEPLOY / "kubernetes/statefulset.yaml").read_text())
    pod = statefulset["spec"]["template"]
    container = pod["spec"]["containers"][0]

    assert statefulset["kind"] == "StatefulSet"
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    assert {"name": "state", "mountPath": "/var/lib/revmon"} in container["volumeMounts"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """`promtool check config` accepts deploy/prometheus.yml (rules or an empty stand-in)."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/revmon-rules.yml"]
    rules = tmp_path / "revmon-rules.yml"
    rules.write_text(RULES.read_text() if RULES.exists() else "groups: []\n")
    config["rule_files"] = [str(rules)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))

    result = check(tool("promtool"), "check", "config", str(path))

    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_passes_amtool() -> None:
    """`amtool check-config` accepts deploy/alertmanager.yml."""
    result = check(tool("amtool"), "check-config", str(DEPLOY / "alertmanager.yml"))

    assert result.returncode == 0, result.stdout + result.stderr


def test_lock_file_pins_every_dependency_with_hashes() -> None:
    """requirements.lock (what the image installs) pins each runtime dependency by hash."""
    lock = (REPO / "requirements.lock").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    block = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    names = re.findall(r'^\s*"([A-Za-z0-9_.\-]+)', block, re.MULTILINE)

    assert len(names) > 5
    for name in names:
        pinned = re.search(
            rf"^{re.escape(name.lower())}==\S+ \\\n\s+--hash=sha256:", lock, re.MULTILINE | re.I
        )
        assert pinned, f"{name} is not pinned with a hash in requirements.lock"


@pytest.mark.parametrize("find", [tool, prometheus_binary], ids=["validator", "prometheus"])
@pytest.mark.parametrize(
    ("ci", "outcome"),
    [
        pytest.param("true", pytest.fail.Exception, id="ci-fails"),
        pytest.param("", pytest.skip.Exception, id="workstation-skips"),
    ],
)
def test_a_missing_tool_fails_in_ci_and_skips_elsewhere(
    find: Callable[[str], str],
    ci: str,
    outcome: type[BaseException],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With CI=true a missing validator or Prometheus tool is a failure, never a skip."""
    monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome):
        find("no-such-validator-anywhere")
