"""`revmon check-config`: the effective config as YAML, secrets masked, bad config in one line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.running import Result, clean_env, revmon

pytestmark = pytest.mark.e2e

SECRET = "s3cret-Pa55"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value: Any) -> float:
    """A duration as printed (`5s` or a number of seconds) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    return float(text[:-1]) * _UNITS[text[-1]]


def check_config(tmp_path: Path, yaml_text: str | None = None, **env: str) -> Result:
    """Run `revmon check-config`, with `yaml_text` as the --config file when given."""
    args = ["check-config"]
    if yaml_text is not None:
        path = tmp_path / "revmon.yaml"
        path.write_text(yaml_text)
        args += ["--config", str(path)]
    return revmon(*args, env=clean_env(**env), cwd=tmp_path, timeout=30)


def effective(result: Result) -> dict[str, Any]:
    """The printed config, parsed, after checking the command succeeded."""
    assert result.code == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert isinstance(data, dict)
    return data


def test_defaults_are_printed_as_yaml(tmp_path: Path) -> None:
    """Without a file or variables, check-config prints SPEC §8's defaults as YAML."""
    config = effective(check_config(tmp_path))

    assert config["broker"] == "embedded"
    assert config["kafka"]["security_protocol"] == "PLAINTEXT"
    for key in ("sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile"):
        assert config["kafka"][key] is None
    assert (config["clock"], config["currency"], config["timezone"]) == ("wall", "USD", "UTC")
    assert (config["web_host"], config["web_port"], config["web_config"]) == (
        "127.0.0.1",
        6066,
        None,
    )
    assert config["windows"] == ["7d", "30d", "90d"]
    assert seconds(config["publish_interval"]) == 5
    assert seconds(config["dedupe_horizon"]) == 30 * 86400
    assert config["alertmanager_url"] is None
    assert config["topics"] == {
        "crm": "revmon.crm.events",
        "marketing": "revmon.marketing.events",
        "billing": "revmon.billing.events",
        "dead_letter": "revmon.events.dlq",
        "metrics": "revmon.metrics",
        "alerts": "revmon.alerts",
    }
    lead, opportunity = config["funnels"]["lead"], config["funnels"]["opportunity"]
    assert (lead["stages"], lead["converted"], lead["dropped"]) == (
        ["name", "mql", "sql"],
        "opportunity",
        ["disqualified"],
    )
    assert {k: seconds(v) for k, v in lead["sla"].items()} == {
        "name": 30 * 86400,
        "mql": 7 * 86400,
        "sql": 14 * 86400,
    }
    assert (opportunity["stages"], opportunity["converted"], opportunity["dropped"]) == (
        ["qualification", "discovery", "proposal", "negotiation"],
        "won",
        ["lost"],
    )
    assert {k: seconds(v) for k, v in opportunity["sla"].items()} == {
        "qualification": 14 * 86400,
        "discovery": 30 * 86400,
        "proposal": 30 * 86400,
        "negotiation": 21 * 86400,
    }
    assert (lead["expire"], opportunity["expire"]) == ({}, {})  # SPEC §2: off by default
    assert config["marketing"]["channels"] == [
        "paid_search",
        "paid_social",
        "email",
        "events",
        "webinar",
        "organic",
        "referral",
        "partner",
    ]
    assert [Decimal(str(b)) for b in config["segments"]["boundaries"]] == [
        0,
        10_000,
        100_000,
        1_000_000,
        5_000_000,
    ]
    assert {k: seconds(v) for k, v in config["segments"]["cadence"].items()} == {
        "10k_100k": 90 * 86400,
        "100k_1m": 30 * 86400,
        "1m_5m": 30 * 86400,
        "5m_plus": 14 * 86400,
    }
    assert Decimal(str(config["pipeline"]["required_coverage"])) == 3
    assert config["targets"] == []
    rules = {rule["name"]: rule for rule in config["alerts"]}
    assert set(rules) == {
        "ExpenseToRevenueHigh",
        "NewBusinessPipelineThinning",
        "PipelineCoverageLow",
        "LeadConversionDrop",
        "StaleOpportunities",
        "CustomerChurnHigh",
        "KeyAccountsUndercovered",
    }
    assert rules["NewBusinessPipelineThinning"]["severity"] == "critical"
    assert (rules["ExpenseToRevenueHigh"]["op"], rules["ExpenseToRevenueHigh"]["threshold"]) == (
        ">=",
        0.6,
    )


def test_printed_config_loads_back_to_itself(tmp_path: Path) -> None:
    """The printed config is a valid config file that prints the same again."""
    first = check_config(tmp_path)
    assert first.code == 0, first.stderr

    second = check_config(tmp_path, first.stdout)

    assert second.code == 0, second.stderr
    assert second.stdout == first.stdout


def test_file_and_environment_merge_with_the_defaults(tmp_path: Path) -> None:
    """A file's mapping merges key by key, a list replaces, and REVMON_* beats the file."""
    config = effective(
        check_config(
            tmp_path,
            "funnels: {lead: {stages: [a, b], converted: c}}\nwindows: [1d]\nweb_port: 7000\n",
            REVMON_WEB_PORT="7001",
            REVMON_TOPICS__CRM="my.crm",
        )
    )

    assert config["funnels"]["lead"]["stages"] == ["a", "b"]
    assert config["funnels"]["opportunity"]["converted"] == "won"
    assert config["windows"] == ["1d"]
    assert config["web_port"] == 7001
    assert config["topics"]["crm"] == "my.crm"
    assert config["topics"]["billing"] == "revmon.billing.events"


#: An external cluster with SASL (the password given by each case), as YAML and as variables.
SASL_YAML = (
    "broker: kafka://k:9092\n"
    "kafka: {security_protocol: SASL_SSL, sasl_mechanism: SCRAM-SHA-512, sasl_username: bob"
)
SASL_ENV = {
    "REVMON_BROKER": "kafka://k:9092",
    "REVMON_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "REVMON_KAFKA__SASL_MECHANISM": "PLAIN",
    "REVMON_KAFKA__SASL_USERNAME": "bob",
}


@pytest.mark.parametrize(
    ("yaml_text", "env"),
    [
        pytest.param(None, {**SASL_ENV, "REVMON_KAFKA__SASL_PASSWORD": SECRET}, id="env-variable"),
        pytest.param(f"{SASL_YAML}, sasl_password: {SECRET}}}\n", {}, id="yaml-file"),
        pytest.param(
            None,
            {
                "REVMON_BROKER": "kafka://k:9092",
                "REVMON_KAFKA": '{"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": '
                f'"PLAIN", "sasl_username": "bob", "sasl_password": "{SECRET}"}}',
            },
            id="env-json-mapping",
        ),
        pytest.param(
            f"{SASL_YAML}, sasl_password: {SECRET}}}\n"
            "alertmanager_url: http://127.0.0.1:9093/\n"
            f"alertmanager_username: bob\nalertmanager_password: {SECRET}\n",
            {},
            id="yaml-file-and-alertmanager",
        ),
    ],
)
def test_secrets_are_masked(tmp_path: Path, yaml_text: str | None, env: dict[str, str]) -> None:
    """A SASL password or Alertmanager password is printed as the mask, never in clear."""
    result = check_config(tmp_path, yaml_text, **env)

    assert result.code == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert effective(result)["kafka"]["sasl_password"] == "********"


def test_secret_from_a_password_file_is_masked(tmp_path: Path) -> None:
    """`sasl_password_file` is read, and its content is masked like an inline password."""
    secret_file = tmp_path / "password.txt"
    secret_file.write_text(SECRET + "\n")

    result = check_config(tmp_path, f"{SASL_YAML}, sasl_password_file: {secret_file}}}\n")

    assert SECRET not in result.stdout + result.stderr
    assert effective(result)["kafka"]["sasl_password"] == "********"


def one_line_error(result: Result) -> str:
    """The single stderr line of a command that failed on its configuration (exit code 2)."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("yaml_text", "env", "names"),
    [
        pytest.param(
            None, {"REVMON_PUBLISH_INTERVAL": "5x"}, "publish_interval", id="env-duration"
        ),
        pytest.param(
            "funnels: {lead: {sla: {mql: soon}}}\n", {}, "funnels.lead.sla.mql", id="yaml-duration"
        ),
        pytest.param("windows: [7d, 0d]\n", {}, "windows", id="zero-window"),
        pytest.param(
            "funnels: {lead: {expire: {disqualified: 30d}}}\n",
            {},
            "funnels.lead",
            id="expire-of-a-closed-stage",
        ),
        pytest.param(
            "funnels: {opportunity: {expire: {proposal: 0d}}}\n",
            {},
            "funnels.opportunity.expire.proposal",
            id="expire-of-zero",
        ),
        pytest.param(
            "funnels: {lead: {dropped: [], expire: {mql: 30d}}}\n",
            {},
            "funnels.lead",
            id="expire-without-a-dropped-stage",
        ),
        pytest.param("bogus_key: 1\n", {}, "bogus_key", id="unknown-key"),
        pytest.param("worker: {bogus: 1}\n", {}, "worker.bogus", id="unknown-nested-key"),
        pytest.param(
            "funnels: {lead: {stages: []}}\n", {}, "funnels.lead.stages", id="no-lead-stages"
        ),
        pytest.param(
            "funnels: {lead: {stages: [Bad Stage]}}\n",
            {},
            "funnels.lead.stages",
            id="bad-stage-name",
        ),
        pytest.param(
            "funnels: {lead: {stages: [name, name]}}\n",
            {},
            "funnels.lead",
            id="stage-twice",
        ),
        pytest.param(
            None, {"REVMON_FUNNELS__LEAD__STAGES": "[]"}, "funnels.lead.stages", id="env-stages"
        ),
        pytest.param(
            None,
            {"REVMON_FUNNELS__LEAD__STAGES": "name,mql"},
            "REVMON_FUNNELS__LEAD__STAGES",
            id="env-stages-not-json",
        ),
        pytest.param(None, {"REVMON_FOO": "1"}, "REVMON_FOO", id="unknown-variable"),
        pytest.param("web_port: 99999\n", {}, "web_port", id="port-out-of-range"),
        pytest.param("broker: kafka://nohost\n", {}, "broker", id="broker-without-port"),
        pytest.param(
            f"{SASL_YAML}, sasl_password_file: /nonexistent/password}}\n",
            {},
            "sasl_password_file",
            id="missing-password-file",
        ),
        pytest.param(
            "alertmanager_url: 'http://127.0.0.1:notaport'\n",
            {},
            "alertmanager_url",
            id="alertmanager-url-bad-port",
        ),
        pytest.param(
            None,
            {"REVMON_ALERTMANAGER_URL": "http://[::1"},
            "alertmanager_url",
            id="alertmanager-url-bad-ipv6",
        ),
    ],
)
def test_invalid_config_fails_in_one_line_naming_the_key(
    tmp_path: Path, yaml_text: str | None, env: dict[str, str], names: str
) -> None:
    """Invalid config exits 2 with one `revmon: invalid config` line that names the key."""
    line = one_line_error(check_config(tmp_path, yaml_text, **env))

    assert line.startswith("revmon: invalid config"), line
    assert names in line, line


@pytest.mark.parametrize("how", ["option", "variable"])
def test_missing_config_file_fails_in_one_line(tmp_path: Path, how: str) -> None:
    """A config file that does not exist exits 2 with one `revmon: cannot read` line naming it."""
    missing = tmp_path / "nope" / "revmon.yaml"
    if how == "option":
        result = revmon("check-config", "--config", str(missing), cwd=tmp_path, timeout=30)
    else:
        env = clean_env(REVMON_CONFIG=str(missing))
        result = revmon("check-config", env=env, cwd=tmp_path, timeout=30)

    line = one_line_error(result)

    assert line.startswith("revmon: cannot read"), line
    assert str(missing) in line, line


@pytest.mark.parametrize(
    ("yaml_text", "env"),
    [
        pytest.param(
            f"kafka: {{sasl_password: {SECRET}, sasl_mechanism: NOPE}}\n", {}, id="beside-error"
        ),
        pytest.param(f"kafka: {{sasl_password: [{SECRET}]}}\n", {}, id="secret-of-wrong-type"),
        pytest.param(f"kafka: {{sasl_password: {SECRET}\n", {}, id="secret-in-broken-yaml"),
        pytest.param(
            None, {"REVMON_KAFKA": f'{{"sasl_password": {SECRET}}}'}, id="secret-in-bad-json"
        ),
        pytest.param(
            None,
            {"REVMON_KAFKA": f'{{"sasl_password": "{SECRET}", "bogus": 1}}'},
            id="secret-beside-unknown-key",
        ),
    ],
)
def test_errors_never_show_the_secret(
    tmp_path: Path, yaml_text: str | None, env: dict[str, str]
) -> None:
    """A config error near a secret names the key but never prints the secret."""
    line = one_line_error(check_config(tmp_path, yaml_text, **env))

    assert SECRET not in line
    assert line.startswith("revmon: "), line


def test_alertmanager_url_without_scheme_does_not_leak_its_password(tmp_path: Path) -> None:
    """An Alertmanager URL without a scheme is rejected or masked, never echoed with its secret."""
    result = check_config(tmp_path, REVMON_ALERTMANAGER_URL=f"bob:{SECRET}@127.0.0.1:9093")

    assert SECRET not in result.stdout + result.stderr


def test_check_config_shows_expire(tmp_path: Path) -> None:
    """SPEC §2, v2: a configured expiry is validated and printed per funnel, in seconds."""
    path = tmp_path / "expire.yaml"
    path.write_text("funnels:\n  lead: {expire: {mql: 180d}}\n")

    result = revmon("check-config", "--config", str(path))

    assert result.code == 0, result.stderr
    funnels = effective(result)["funnels"]
    assert {k: seconds(v) for k, v in funnels["lead"]["expire"].items()} == {"mql": 180 * 86400}
    assert funnels["opportunity"]["expire"] == {}
