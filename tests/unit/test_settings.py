"""Settings (SPEC §8): packaged defaults, YAML merge, REVMON_* overrides, one-line errors."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revmon.errors import ConfigError
from revmon.settings import Settings, load_settings, masked, parse_duration, segment_names

DAY = 86400.0
SECRET = "hunter2-do-not-leak"
#: An external cluster with SASL: user and mechanism, the password to come from elsewhere.
SASL_CLUSTER: dict[str, Any] = {
    "broker": "kafka://kafka:9092",
    "kafka": {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "u",
    },
}


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty config file that $REVMON_CONFIG points at; tests write into it."""
    path = tmp_path / "revmon.yaml"
    path.write_text("", encoding="utf-8")
    monkeypatch.setenv("REVMON_CONFIG", str(path))
    return path


def _load(path: Path, text: str) -> Settings:
    path.write_text(text, encoding="utf-8")
    return load_settings()


def _config_error(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings()
    return str(info.value)


# -- defaults -------------------------------------------------------------------------


def test_defaults_scalars_match_spec() -> None:
    """Without a file or variables, every scalar key has its SPEC §8 default."""
    settings = load_settings()

    assert settings.broker == "embedded"
    assert settings.bootstrap_servers is None
    assert settings.clock == "wall"
    assert settings.currency == "USD"
    assert settings.timezone == "UTC"
    assert settings.web_host == "127.0.0.1"
    assert settings.web_port == 6066
    assert settings.web_config is None
    assert settings.publish_interval == 5.0
    assert settings.dedupe_horizon == 30 * DAY
    assert settings.alertmanager_url is None
    assert settings.pipeline.required_coverage == Decimal(3)
    assert settings.targets == ()


def test_defaults_kafka_security_is_plaintext_without_secrets() -> None:
    """The default `kafka:` block is PLAINTEXT with no SASL or TLS material."""
    kafka = load_settings().kafka

    assert kafka.security_protocol == "PLAINTEXT"
    assert kafka.sasl_mechanism is None
    assert kafka.sasl_username is None
    assert kafka.sasl_password is None
    assert (kafka.ssl_cafile, kafka.ssl_certfile, kafka.ssl_keyfile) == (None, None, None)


def test_defaults_windows_are_7d_30d_90d() -> None:
    """The default windows are 7d, 30d and 90d, with their lengths in seconds."""
    settings = load_settings()

    assert settings.windows == ("7d", "30d", "90d")
    assert [(w.label, w.seconds) for w in settings.window_list] == [
        ("7d", 7 * DAY),
        ("30d", 30 * DAY),
        ("90d", 90 * DAY),
    ]


def test_defaults_topics_match_spec() -> None:
    """The six default topic names are those of SPEC §1 and §6."""
    topics = load_settings().topics

    assert topics.inputs == (
        "revmon.crm.events",
        "revmon.marketing.events",
        "revmon.billing.events",
    )
    assert topics.dead_letter == "revmon.events.dlq"
    assert topics.metrics == "revmon.metrics"
    assert topics.alerts == "revmon.alerts"


@pytest.mark.parametrize(
    ("funnel", "stages", "converted", "dropped", "sla_days"),
    [
        pytest.param(
            "lead",
            ("name", "mql", "sql"),
            "opportunity",
            ("disqualified",),
            {"name": 30, "mql": 7, "sql": 14},
            id="lead",
        ),
        pytest.param(
            "opportunity",
            ("qualification", "discovery", "proposal", "negotiation"),
            "won",
            ("lost",),
            {"qualification": 14, "discovery": 30, "proposal": 30, "negotiation": 21},
            id="opportunity",
        ),
    ],
)
def test_defaults_funnels_match_spec(
    funnel: str,
    stages: tuple[str, ...],
    converted: str,
    dropped: tuple[str, ...],
    sla_days: dict[str, int],
) -> None:
    """Each default funnel has SPEC §2's stages, terminal stages and SPEC §8's SLAs."""
    settings = getattr(load_settings().funnels, funnel)

    assert settings.stages == stages
    assert settings.converted == converted
    assert settings.dropped == dropped
    assert settings.sla == {stage: days * DAY for stage, days in sla_days.items()}
    assert settings.all_stages == (*stages, converted, *dropped)


def test_defaults_segments_names_and_cadence_match_spec() -> None:
    """Default boundaries give SPEC §3.7's six segments and their default cadences."""
    segments = load_settings().segments

    assert segments.boundaries == tuple(Decimal(b) for b in (0, 10_000, 100_000, 10**6, 5 * 10**6))
    assert segments.names == ("zero", "lt_10k", "10k_100k", "100k_1m", "1m_5m", "5m_plus")
    assert segments.cadence == {
        "10k_100k": 90 * DAY,
        "100k_1m": 30 * DAY,
        "1m_5m": 30 * DAY,
        "5m_plus": 14 * DAY,
    }


def test_defaults_marketing_channels_match_spec() -> None:
    """The default channel list is SPEC §8's, and `other` is always a label."""
    marketing = load_settings().marketing

    assert marketing.channels == (
        "paid_search",
        "paid_social",
        "email",
        "events",
        "webinar",
        "organic",
        "referral",
        "partner",
    )
    assert marketing.labels == (*marketing.channels, "other")


SHIPPED_ALERTS = [
    ("ExpenseToRevenueHigh", "revmon_er_ratio", {"window": "90d"}, ">=", 0.6, "warning"),
    (
        "NewBusinessPipelineThinning",
        "revmon_pipeline_creation_pace_ratio",
        {"kind": "new_business"},
        "<",
        0.6,
        "critical",
    ),
    (
        "PipelineCoverageLow",
        "revmon_pipeline_coverage_ratio",
        {"kind": "new_business"},
        "<",
        3.0,
        "warning",
    ),
    (
        "LeadConversionDrop",
        "revmon_funnel_conversion_ratio",
        {"funnel": "lead", "stage": "mql", "window": "30d"},
        "<",
        0.2,
        "warning",
    ),
    (
        "StaleOpportunities",
        "revmon_funnel_stale_ratio",
        {"funnel": "opportunity"},
        ">",
        0.25,
        "warning",
    ),
    ("CustomerChurnHigh", "revmon_customer_churn_ratio", {"window": "90d"}, ">", 0.05, "warning"),
    (
        "KeyAccountsUndercovered",
        "revmon_accounts_undercovered",
        {"segment": ("1m_5m", "5m_plus")},
        ">",
        0.0,
        "warning",
    ),
]


def test_defaults_ship_exactly_the_seven_spec_alerts() -> None:
    """The shipped alert rules are SPEC §5's seven, in order, by name."""
    names = [rule.name for rule in load_settings().alerts]

    assert names == [alert[0] for alert in SHIPPED_ALERTS]


@pytest.mark.parametrize(
    ("name", "metric", "labels", "op", "threshold", "severity"),
    [pytest.param(*alert, id=alert[0]) for alert in SHIPPED_ALERTS],
)
def test_defaults_shipped_alert_matches_spec(
    name: str,
    metric: str,
    labels: dict[str, Any],
    op: str,
    threshold: float,
    severity: str,
) -> None:
    """Each shipped rule has SPEC §5's metric, labels, comparison, threshold and severity."""
    rule = next(rule for rule in load_settings().alerts if rule.name == name)

    assert (rule.metric, rule.labels, rule.op, rule.threshold, rule.severity) == (
        metric,
        labels,
        op,
        threshold,
        severity,
    )
    assert rule.for_ == DAY


def test_defaults_expense_alert_has_hysteresis() -> None:
    """ExpenseToRevenueHigh resolves only below 0.55, as in SPEC §5's example."""
    rule = load_settings().alerts[0]

    assert rule.clear == 0.55


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after start."""
    settings = load_settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.web_port = 1  # type: ignore[misc]


# -- file merge -------------------------------------------------------------------------


def test_file_lead_funnel_keeps_default_opportunity_funnel(config_file: Path) -> None:
    """Giving `funnels.lead` merges: `funnels.opportunity` keeps its default."""
    settings = _load(
        config_file, "funnels:\n  lead:\n    stages: [new, warm]\n    converted: deal\n"
    )

    assert settings.funnels.lead.stages == ("new", "warm")
    assert settings.funnels.lead.converted == "deal"
    assert settings.funnels.lead.dropped == ("disqualified",)
    assert settings.funnels.lead.sla == {}
    assert settings.funnels.opportunity == load_settings(None).funnels.opportunity


def test_file_one_sla_keeps_other_default_slas(config_file: Path) -> None:
    """`funnels.lead.sla: {mql: 3d}` changes mql only; name and sql keep their defaults."""
    settings = _load(config_file, "funnels:\n  lead:\n    sla: {mql: 3d}\n")

    assert settings.funnels.lead.sla == {"name": 30 * DAY, "mql": 3 * DAY, "sql": 14 * DAY}
    assert settings.funnels.lead.stages == ("name", "mql", "sql")


@pytest.mark.parametrize(
    ("text", "attribute", "expected"),
    [
        pytest.param("windows: [1d]\n", ("windows",), ("1d",), id="windows"),
        pytest.param(
            "marketing:\n  channels: [tv]\n", ("marketing", "channels"), ("tv",), id="channels"
        ),
        pytest.param(
            "funnels:\n  lead:\n    dropped: [junk]\n",
            ("funnels", "lead", "dropped"),
            ("junk",),
            id="dropped-stages",
        ),
        pytest.param(
            "alerts: []\n",
            ("alerts",),
            (),
            id="alerts",
        ),
    ],
)
def test_file_list_replaces_default(
    config_file: Path, text: str, attribute: tuple[str, ...], expected: tuple[Any, ...]
) -> None:
    """A list in the file replaces its default instead of merging with it."""
    value: Any = _load(config_file, text)
    for name in attribute:
        value = getattr(value, name)

    assert value == expected


def test_file_scalars_replace_defaults(config_file: Path) -> None:
    """Scalars from the file replace defaults; keys not given keep them."""
    settings = _load(config_file, "currency: EUR\nclock: event\nworker:\n  batch_size: 7\n")

    assert (settings.currency, settings.clock) == ("EUR", "event")
    assert settings.worker.batch_size == 7
    assert settings.worker.app_id == "revmon"
    assert settings.web_port == 6066


def test_explicit_path_is_read_without_revmon_config(tmp_path: Path) -> None:
    """`load_settings(path)` reads that file ($REVMON_CONFIG unset)."""
    path = tmp_path / "c.yaml"
    path.write_text("web_port: 7100\n", encoding="utf-8")

    assert load_settings(path).web_port == 7100


def test_empty_file_gives_defaults(config_file: Path) -> None:
    """An empty config file (YAML null) is the same as no file."""
    assert _load(config_file, "# nothing here\n") == load_settings(None)


def test_targets_from_file(config_file: Path) -> None:
    """A target for a quarter and one for a month are read with exact amounts."""
    settings = _load(
        config_file,
        "targets:\n"
        "  - {period: 2026-Q4, kind: new_business, amount: 1200000}\n"
        "  - {period: 2026-11, kind: all, amount: '0.10'}\n",
    )

    assert [(t.period, t.kind, t.amount) for t in settings.targets] == [
        ("2026-Q4", "new_business", Decimal(1_200_000)),
        ("2026-11", "all", Decimal("0.10")),
    ]


def test_kafka_broker_url_gives_bootstrap_servers(config_file: Path) -> None:
    """`broker: kafka://h1:9092,h2:9092` is an external cluster at those servers."""
    settings = _load(config_file, "broker: kafka://h1:9092,h2:9093\n")

    assert settings.bootstrap_servers == "h1:9092,h2:9093"


# -- environment -----------------------------------------------------------------------


def test_env_scalar_overrides(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REVMON_WEB_PORT=7000 sets web_port; file keys still apply."""
    config_file.write_text("currency: EUR\n", encoding="utf-8")
    monkeypatch.setenv("REVMON_WEB_PORT", "7000")

    settings = load_settings()

    assert settings.web_port == 7000
    assert settings.currency == "EUR"


def test_env_nested_key_overrides_and_merges(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REVMON_FUNNELS__LEAD__STAGES sets only lead stages; the rest of funnels keeps defaults."""
    monkeypatch.setenv("REVMON_FUNNELS__LEAD__STAGES", '["a","b"]')

    settings = load_settings()

    assert settings.funnels.lead.stages == ("a", "b")
    assert settings.funnels.lead.converted == "opportunity"
    assert settings.funnels.opportunity == load_settings(None).funnels.opportunity


@pytest.mark.parametrize(
    ("text", "variable", "value", "attribute", "expected"),
    [
        pytest.param("web_port: 7001\n", "REVMON_WEB_PORT", "7000", ("web_port",), 7000, id="top"),
        pytest.param(
            "funnels:\n  lead:\n    stages: [x]\n",
            "REVMON_FUNNELS__LEAD__STAGES",
            '["a","b"]',
            ("funnels", "lead", "stages"),
            ("a", "b"),
            id="nested",
        ),
        pytest.param(
            "windows: [1d]\n", "REVMON_WINDOWS", '["2d"]', ("windows",), ("2d",), id="list"
        ),
    ],
)
def test_env_beats_file(
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    variable: str,
    value: str,
    attribute: tuple[str, ...],
    expected: Any,
) -> None:
    """A REVMON_* variable wins over the same key in the config file."""
    monkeypatch.setenv(variable, value)
    result: Any = _load(config_file, text)
    for name in attribute:
        result = getattr(result, name)

    assert result == expected


def test_env_lowercase_name_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variable names are case-insensitive (revmon_web_port works like REVMON_WEB_PORT)."""
    monkeypatch.setenv("revmon_web_port", "7002")

    assert load_settings().web_port == 7002


@pytest.mark.parametrize(
    ("variable", "named"),
    [
        pytest.param("REVMON_WEBPORT", "REVMON_WEBPORT", id="top-level"),
        pytest.param(
            "REVMON_KAFKA_SASL_PASSWORD", "REVMON_KAFKA_SASL_PASSWORD", id="one-underscore"
        ),
        pytest.param("REVMON_FUNNELS__LEED__STAGES", "funnels.leed", id="nested"),
    ],
)
def test_env_unknown_variable_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, named: str
) -> None:
    """A REVMON_* variable that names no key fails start with a one-line error naming it."""
    monkeypatch.setenv(variable, '["x"]')

    with pytest.raises(ConfigError) as info:
        load_settings()

    assert named in str(info.value)
    assert "\n" not in str(info.value)


def test_env_secret_is_read_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """REVMON_KAFKA__SASL_PASSWORD sets the password; repr and masked() never show it."""
    monkeypatch.setenv("REVMON_KAFKA__SASL_PASSWORD", SECRET)

    settings = load_settings(None, **SASL_CLUSTER)

    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in json.dumps(masked(settings))


def test_env_invalid_json_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A REVMON_* value that is not JSON for a list key gives an error naming that key."""
    monkeypatch.setenv("REVMON_FUNNELS__LEAD__STAGES", "not-json")

    with pytest.raises(ConfigError) as info:
        load_settings()

    message = str(info.value)
    assert "funnels.lead.stages" in message or "REVMON_FUNNELS__LEAD__STAGES" in message


def test_env_bare_number_duration_is_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A duration given as a bare number in a variable is seconds, as in the YAML file."""
    monkeypatch.setenv("REVMON_DEDUPE_HORIZON", "90")

    assert load_settings().dedupe_horizon == 90.0


def test_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword overrides of load_settings() win over REVMON_* variables."""
    monkeypatch.setenv("REVMON_WEB_PORT", "7000")

    assert load_settings(None, web_port=7002).web_port == 7002


def test_overrides_beat_file(config_file: Path) -> None:
    """Keyword overrides of load_settings() win over the file and merge mappings."""
    config_file.write_text("web_port: 7001\nfunnels:\n  lead:\n    stages: [x]\n", encoding="utf-8")

    settings = load_settings(None, web_port=7002, funnels={"lead": {"converted": "deal"}})

    assert settings.web_port == 7002
    assert settings.funnels.lead.stages == ("x",)
    assert settings.funnels.lead.converted == "deal"


# -- invalid configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param("funnels:\n  lead:\n    stages: [a, a]\n", "funnels.lead", id="dup-stage"),
        pytest.param(
            "funnels:\n  lead:\n    stages: [a, opportunity]\n",
            "funnels.lead",
            id="stage-is-terminal",
        ),
        pytest.param(
            "funnels:\n  lead:\n    stages: [Bad-Name]\n", "funnels.lead.stages.0", id="stage-name"
        ),
        pytest.param(
            "funnels:\n  lead:\n    sla: {zzz: 1d}\n", "funnels.lead", id="sla-unknown-stage"
        ),
        pytest.param(
            "funnels:\n  lead:\n    sla: {mql: 0s}\n", "funnels.lead.sla.mql", id="sla-zero"
        ),
        pytest.param("windows: [7x]\n", "windows.0", id="window-bad-duration"),
        pytest.param("windows: [7d, 30d, 0d]\n", "windows.2", id="window-zero"),
        pytest.param("windows: [7d, 7d]\n", "windows", id="window-twice"),
        pytest.param("windows: []\n", "windows", id="no-windows"),
        pytest.param("web_port: 70000\n", "web_port", id="port-high"),
        pytest.param("web_port: -1\n", "web_port", id="port-negative"),
        pytest.param("currency: usd\n", "currency", id="currency-lowercase"),
        pytest.param("currency: EURO\n", "currency", id="currency-long"),
        pytest.param(
            "targets:\n  - {period: 2026-Q5, kind: all, amount: 1}\n",
            "targets.0.period",
            id="target-period",
        ),
        pytest.param(
            "targets:\n  - {period: 2026-Q1, kind: upsell, amount: 1}\n",
            "targets.0.kind",
            id="target-kind",
        ),
        pytest.param(
            "targets:\n  - {period: 2026-Q1, kind: all, amount: -1}\n",
            "targets.0.amount",
            id="target-negative",
        ),
        pytest.param(
            "segments:\n  boundaries: [0, 100, 100]\n", "segments.boundaries", id="boundaries-flat"
        ),
        pytest.param(
            "segments:\n  boundaries: [0, 100, 10]\n", "segments.boundaries", id="boundaries-down"
        ),
        pytest.param(
            "segments:\n  boundaries: [5, 100]\n", "segments.boundaries", id="boundaries-not-zero"
        ),
        pytest.param("segments:\n  cadence: {bogus: 1d}\n", "segments", id="cadence-unknown"),
        pytest.param("broker: http://h:9092\n", "broker", id="broker-scheme"),
        pytest.param("broker: kafka://\n", "broker", id="broker-empty"),
        pytest.param("broker: kafka://host\n", "broker", id="broker-no-port"),
        pytest.param("broker: kafka://h:1,h:x\n", "broker", id="broker-bad-port"),
        pytest.param("timezone: Mars/Olympus\n", "timezone", id="timezone"),
        pytest.param("clock: lunar\n", "clock", id="clock"),
        pytest.param("publish_interval: 0s\n", "publish_interval", id="interval-zero"),
        pytest.param("dedupe_horizon: soon\n", "dedupe_horizon", id="horizon-text"),
        pytest.param(
            "kafka:\n  security_protocol: TLS\n", "kafka.security_protocol", id="kafka-proto"
        ),
        pytest.param("kafka:\n  nope: 1\n", "kafka.nope", id="kafka-unknown"),
        pytest.param("topics:\n  metrics: revmon.alerts\n", "topics", id="topics-not-distinct"),
        pytest.param(
            "alerts:\n  - {name: X, metric: bad, op: '>', threshold: 1}\n",
            "alerts.0: rule X: metric",
            id="alert-metric",
        ),
        pytest.param(
            "alerts:\n  - {name: X, metric: revmon_x, op: '=', threshold: 1}\n",
            "alerts.0: rule X: op",
            id="alert-op",
        ),
        pytest.param("bogus: 1\n", "bogus", id="unknown-top-level"),
        pytest.param("funnels:\n  deal: {}\n", "funnels.deal", id="unknown-funnel"),
        pytest.param("funnels: null\n", "funnels", id="null-mapping"),
    ],
)
def test_invalid_value_is_one_line_error_naming_the_key(
    config_file: Path, text: str, named: str
) -> None:
    """An invalid value fails start with a ConfigError of one line naming the dotted key."""
    message = _config_error(config_file, text)

    assert message.startswith("invalid config: ")
    assert f"{named}:" in message
    assert "\n" not in message


def test_unknown_key_says_so(config_file: Path) -> None:
    """An unknown key is reported as `unknown key`, not as a type error."""
    assert _config_error(config_file, "web_prot: 1\n") == "invalid config: web_prot: unknown key"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("- a\n- b\n", "must be a mapping", id="list"),
        pytest.param("just text\n", "must be a mapping", id="scalar"),
        pytest.param("a: [\n", "is not valid YAML at line", id="invalid-yaml"),
        pytest.param("a: 1\n  b: 2\n", "is not valid YAML", id="bad-indent"),
    ],
)
def test_unusable_file_is_one_line_error_naming_it(
    config_file: Path, text: str, fragment: str
) -> None:
    """A file that is not a YAML mapping fails with a one-line error naming the file."""
    message = _config_error(config_file, text)

    assert str(config_file) in message
    assert fragment in message
    assert "\n" not in message


def test_missing_file_is_one_line_error_naming_it(tmp_path: Path) -> None:
    """A config path that does not exist fails with a one-line error naming the path."""
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as info:
        load_settings(missing)

    assert str(info.value) == f"cannot read config file {missing}: No such file or directory"


def test_missing_file_from_revmon_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$REVMON_CONFIG naming a missing file is a ConfigError, not an unknown-variable error."""
    monkeypatch.setenv("REVMON_CONFIG", str(tmp_path / "nope.yaml"))

    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings()


def test_several_errors_stay_on_one_line(config_file: Path) -> None:
    """Several invalid keys are all named, on one line."""
    message = _config_error(config_file, "web_port: 70000\ncurrency: usd\n")

    assert "web_port:" in message
    assert "currency:" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"kafka:\n  sasl_password: [{SECRET}]\n", id="password-wrong-type"),
        pytest.param(
            f"kafka:\n  sasl_password: {SECRET}\n  security_protocol: TLS\n", id="other-key-bad"
        ),
        pytest.param(f"kafka:\n  sasl_password: '{SECRET}\n", id="broken-yaml"),
    ],
)
def test_config_error_never_shows_the_secret(config_file: Path, text: str) -> None:
    """Error messages about the config never contain the SASL password."""
    assert SECRET not in _config_error(config_file, text)


# -- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("30d", 30 * DAY, id="days"),
        pytest.param("12h", 12 * 3600.0, id="hours"),
        pytest.param("5m", 300.0, id="minutes"),
        pytest.param("10s", 10.0, id="seconds"),
        pytest.param("200ms", 0.2, id="milliseconds"),
        pytest.param("1.5h", 5400.0, id="fraction"),
        pytest.param("0s", 0.0, id="zero"),
        pytest.param(" 5 m ", 300.0, id="spaces"),
        pytest.param(90, 90.0, id="bare-int"),
        pytest.param(1.5, 1.5, id="bare-float"),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    """A duration with unit s, m, h, d or ms, or a bare number, is that many seconds."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("5M", id="capital-unit"),
        pytest.param("1w", id="weeks"),
        pytest.param("-1s", id="negative-text"),
        pytest.param(-1, id="negative-number"),
        pytest.param("1e3s", id="exponent"),
        pytest.param("d", id="unit-only"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
    ],
)
def test_parse_duration_rejects(value: object) -> None:
    """Anything else is a ValueError (which pydantic reports against the key)."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@given(
    amount=st.integers(min_value=0, max_value=10**12),
    unit=st.sampled_from([("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", DAY)]),
)
def test_parse_duration_roundtrips_any_whole_amount(amount: int, unit: tuple[str, float]) -> None:
    """Any non-negative whole number with a unit is that number times the unit's seconds."""
    suffix, seconds = unit

    assert parse_duration(f"{amount}{suffix}") == amount * seconds


# -- secrets ---------------------------------------------------------------------------


def test_masked_hides_password_from_file(tmp_path: Path) -> None:
    """A password read from `sasl_password_file` is used, and masked() never contains it."""
    secret_file = tmp_path / "sasl.txt"
    secret_file.write_text(f"{SECRET}\n", encoding="utf-8")

    settings = load_settings(
        None,
        broker="kafka://kafka:9092",
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "revmon",
            "sasl_password_file": str(secret_file),
        },
    )
    shown = json.dumps(masked(settings))

    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == SECRET
    assert SECRET not in shown
    assert SECRET not in repr(settings)
    assert masked(settings)["kafka"]["sasl_password"] == "********"
    assert masked(settings)["kafka"]["sasl_password_file"] == str(secret_file)


def test_masked_hides_password_from_config(config_file: Path) -> None:
    """A password in the config file never appears in masked()."""
    settings = _load(
        config_file,
        "broker: kafka://kafka:9092\nkafka:\n  security_protocol: SASL_PLAINTEXT\n"
        f"  sasl_mechanism: PLAIN\n  sasl_username: u\n  sasl_password: {SECRET}\n",
    )

    assert SECRET not in json.dumps(masked(settings))


def test_masked_without_password_shows_null() -> None:
    """With no password configured, masked() shows null rather than a mask."""
    assert masked(load_settings())["kafka"]["sasl_password"] is None


def test_unreadable_password_file_names_the_key(tmp_path: Path) -> None:
    """A `sasl_password_file` that cannot be read fails start naming the key."""
    with pytest.raises(ConfigError, match="sasl_password_file"):
        load_settings(
            None,
            **{
                **SASL_CLUSTER,
                "kafka": {**SASL_CLUSTER["kafka"], "sasl_password_file": str(tmp_path / "missing")},
            },
        )


def test_masked_hides_alertmanager_credentials() -> None:
    """The Alertmanager password never appears in masked(); the user name does."""
    settings = load_settings(
        None,
        alertmanager_url="http://am:9093",
        alertmanager_username="admin",
        alertmanager_password=SECRET,
    )

    shown = masked(settings)
    assert SECRET not in json.dumps(shown)
    assert (shown["alertmanager_username"], shown["alertmanager_password"]) == ("admin", "********")
    assert settings.alertmanager_auth == ("admin", SECRET)


# -- segments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boundaries", "names"),
    [
        pytest.param(
            [0, 10_000, 100_000, 10**6, 5 * 10**6],
            ("zero", "lt_10k", "10k_100k", "100k_1m", "1m_5m", "5m_plus"),
            id="default",
        ),
        pytest.param([0, 500, 2500], ("zero", "lt_500", "500_2500", "2500_plus"), id="plain"),
        pytest.param([0, 1500, 2000], ("zero", "lt_1500", "1500_2k", "2k_plus"), id="mixed"),
        pytest.param([0, 10**9, 3 * 10**9], ("zero", "lt_1b", "1b_3b", "3b_plus"), id="billions"),
        pytest.param([0, "0.5", 1], ("zero", "lt_0.5", "0.5_1", "1_plus"), id="fraction"),
        pytest.param([0], ("zero", "0_plus"), id="zero-only"),
    ],
)
def test_segment_names(boundaries: list[Any], names: tuple[str, ...]) -> None:
    """Segment labels are zero, lt_<b1>, <b1>_<b2>, ..., <bn>_plus with k/m/b suffixes."""
    assert segment_names([Decimal(str(b)) for b in boundaries]) == names


def test_custom_boundaries_keep_only_applicable_default_cadences(config_file: Path) -> None:
    """With custom boundaries, a default cadence applies only to a segment that still exists."""
    settings = _load(config_file, "segments:\n  boundaries: [0, 10000, 100000]\n")

    assert settings.segments.names == ("zero", "lt_10k", "10k_100k", "100k_plus")
    assert settings.segments.cadence == {"10k_100k": 90 * DAY}


def test_custom_cadence_merges_with_defaults(config_file: Path) -> None:
    """`segments.cadence: {5m_plus: 7d}` changes that cadence and keeps the others."""
    settings = _load(config_file, "segments:\n  cadence: {5m_plus: 7d}\n")

    assert settings.segments.cadence["5m_plus"] == 7 * DAY
    assert settings.segments.cadence["10k_100k"] == 90 * DAY


_RULE = "{name: R, metric: revmon_er_ratio, labels: {window: 90d}, op: '>=', threshold: 0.6"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "alerts:\n  - {name: R, metric: revmon_nope, op: '>', threshold: 1}\n",
            "rule R: metric revmon_nope is not an exported gauge",
            id="unknown-metric",
        ),
        pytest.param(
            "alerts:\n  - {name: R, metric: revmon_funnel_age_seconds, op: '>', threshold: 1}\n",
            "rule R: metric revmon_funnel_age_seconds is not an exported gauge",
            id="gauge-histogram",
        ),
        pytest.param(
            "alerts:\n  - {name: R, metric: revmon_events_total, op: '>', threshold: 1}\n",
            "rule R: metric revmon_events_total is not an exported gauge",
            id="per-worker-counter",
        ),
        pytest.param(
            "alerts:\n  - {name: R, metric: revmon_er_ratio, labels: {kind: x}, op: '>', "
            "threshold: 1}\n",
            "rule R: revmon_er_ratio has no label kind (it has window)",
            id="label-the-metric-lacks",
        ),
        pytest.param(
            "alerts:\n  - {name: R, metric: revmon_er_ratio, op: '>'}\n",
            "rule R: threshold: Field required",
            id="missing-threshold",
        ),
        pytest.param(
            "alerts:\n  - " + _RULE + ", clear: 0.7}\n",
            "rule R: clear must be at or below the threshold 0.6",
            id="clear-above-a-greater-than-rule",
        ),
        pytest.param(
            "alerts:\n  - {name: R, metric: revmon_er_ratio, op: '<', threshold: 3, clear: 2}\n",
            "rule R: clear must be at or above the threshold 3",
            id="clear-below-a-less-than-rule",
        ),
        pytest.param(
            "alerts:\n  - " + _RULE + "}\n  - " + _RULE + "}\n",
            "rule R: the name is used by another rule",
            id="duplicate-name",
        ),
        pytest.param(
            "alerts:\n  - " + _RULE + ", severity: page}\n",
            "rule R: severity:",
            id="bad-severity",
        ),
        pytest.param(
            "alerts:\n  - {name: R, metric: revmon_accounts, labels: {segment: []}, op: '>', "
            "threshold: 1}\n",
            "rule R: labels.segment: an empty list matches nothing",
            id="empty-label-list",
        ),
    ],
)
def test_alert_rules_are_validated_as_a_whole_and_errors_name_the_rule(
    config_file: Path, text: str, expected: str
) -> None:
    """Each invalid rule fails start with one line naming the rule and what is wrong."""
    message = _config_error(config_file, text)
    assert expected in message
    assert "\n" not in message


def test_shipped_alert_rules_are_valid_and_match_their_series() -> None:
    """The seven shipped rules load; a list label matches any of its values."""
    rules = {rule.name: rule for rule in load_settings(None).alerts}
    assert len(rules) == 7
    undercovered = rules["KeyAccountsUndercovered"]
    assert undercovered.matches({"segment": "5m_plus"})
    assert not undercovered.matches({"segment": "100k_1m"})


@pytest.mark.parametrize(
    ("funnels", "expected"),
    [
        pytest.param({}, ({}, {}), id="off-by-default"),
        pytest.param(
            {"lead": {"expire": {"mql": "180d"}}, "opportunity": {"expire": {"proposal": 3600}}},
            ({"mql": 180 * 86400.0}, {"proposal": 3600.0}),
            id="durations-in-seconds",
        ),
    ],
)
def test_funnel_expire(funnels: dict[str, Any], expected: tuple[dict[str, float], ...]) -> None:
    """SPEC §2 (v2): `expire` maps open stages to durations, merged per funnel."""
    settings = load_settings(None, funnels=funnels)

    assert (settings.funnels.lead.expire, settings.funnels.opportunity.expire) == expected


@pytest.mark.parametrize(
    ("funnels", "message"),
    [
        pytest.param(
            {"lead": {"expire": {"opportunity": "30d"}}},
            "expire names stages that are not open stages: opportunity",
            id="converted-stage",
        ),
        pytest.param(
            {"opportunity": {"expire": {"unicorn": "30d"}}},
            "expire names stages that are not open stages: unicorn",
            id="unknown-stage",
        ),
        pytest.param(
            {"lead": {"dropped": [], "expire": {"mql": "30d"}}},
            "expire needs a dropped stage",
            id="no-dropped-stage",
        ),
        pytest.param({"lead": {"expire": {"mql": "0s"}}}, "longer than zero", id="zero"),
    ],
)
def test_funnel_expire_errors(funnels: dict[str, Any], message: str) -> None:
    """A bad `expire` is a config error that names the funnel and says what is wrong."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, funnels=funnels)

    assert "funnels." in str(info.value)
    assert message in str(info.value)
