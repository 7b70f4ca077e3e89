"""The configuration (SPEC §8): defaults, then a YAML file, then REVMON_* variables; frozen."""

from __future__ import annotations

import itertools
import json
import os
import re
import ssl
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from revmon.errors import ConfigError
from revmon.families import FAMILIES
from revmon.webconfig import load_web_config

ENV_PREFIX = "REVMON_"
#: The longest any metric looks back (the 365-day forecast and segment revenue), seconds:
#: the shortest `closed_retention` that forgets nothing a number still needs.
CLOSED_RETENTION_FLOOR = 365 * 86_400.0
CONFIG_ENV = "REVMON_CONFIG"

_NAMES_A_KEY = re.compile(r"^[a-z_]+(\.[a-z_]+)*: ")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds of a duration such as `30d`, `12h`, `5m`, `10s`, `200ms`, or a number of seconds.

    Raises:
        ValueError: the text is not a duration (pydantic reports it against the key).
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30d, 12h, 5m or 10s")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"expected a duration such as 30d, 12h, 5m or 10s, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def _null_text(value: object) -> object:
    # `REVMON_CLOSED_RETENTION=null`: an environment variable can only say null in words.
    return None if isinstance(value, str) and value.strip().lower() == "null" else value


#: A positive duration, or null (YAML `null`, or the text `null` in an environment variable).
OptionalDuration = Annotated[PositiveDuration | None, BeforeValidator(_null_text)]


@dataclass(frozen=True, slots=True)
class Window:
    """A metric window: its label as configured (`7d`) and its length in seconds."""

    label: str
    seconds: float


DEFAULT_SLA: Mapping[str, str] = {
    "name": "30d",
    "mql": "7d",
    "sql": "14d",
    "qualification": "14d",
    "discovery": "30d",
    "proposal": "30d",
    "negotiation": "21d",
}
DEFAULT_CADENCE: Mapping[str, str] = {
    "10k_100k": "90d",
    "100k_1m": "30d",
    "1m_5m": "30d",
    "5m_plus": "14d",
}
_NAME = r"^[a-z][a-z0-9_]{0,63}$"
StageName = Annotated[str, Field(pattern=_NAME)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def read_secret(path: Path, key: str) -> SecretStr:
    """The secret held by the file `path` (surrounding whitespace and the newline stripped).

    Raises:
        ValueError: the file cannot be read; the message names `key`, never the content.
    """
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read {key} {path}: {reason}") from None
    if not secret:
        raise ValueError(f"{key} {path} is empty")
    return SecretStr(secret)


class KafkaSecurity(_Frozen):
    """Client security for every connection to an external cluster (SPEC §9).

    Checked as a whole: a SASL protocol needs a mechanism, a user and a password; a
    mechanism, a user or TLS files with a protocol that would not use them are errors,
    never a silently weaker connection. Every file named loads at start.
    """

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: Annotated[str, Field(min_length=1)] | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _read_password_file(self) -> KafkaSecurity:
        if self.sasl_password_file is not None:
            if self.sasl_password is not None:
                raise ValueError("give sasl_password or sasl_password_file, not both")
            secret = read_secret(self.sasl_password_file, "sasl_password_file")
            object.__setattr__(self, "sasl_password", secret)
        return self

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        protocol = self.security_protocol
        if protocol.startswith("SASL_"):
            for key in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, key) is None:
                    raise ValueError(f"security_protocol {protocol} needs {key}")
        else:
            for key in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"{key} is set but security_protocol {protocol} does not use SASL "
                        "(use SASL_SSL or SASL_PLAINTEXT)"
                    )
        if not protocol.endswith("SSL"):
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"{key} is set but security_protocol {protocol} does not use TLS "
                        "(use SSL or SASL_SSL)"
                    )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
        if protocol.endswith("SSL"):
            self.ssl_context()  # every file loads now, at start
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context for the SSL protocols; verification cannot be turned off.

        Raises:
            ValueError: a CA, certificate or key file cannot be loaded (names the key).
        """
        if not self.security_protocol.endswith("SSL"):
            return None
        try:
            cafile = str(self.ssl_cafile) if self.ssl_cafile else None
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"ssl_cafile {self.ssl_cafile}: cannot load: {_tls_reason(exc)}"
            ) from None
        if self.ssl_certfile:
            keyfile = str(self.ssl_keyfile) if self.ssl_keyfile else None
            try:
                context.load_cert_chain(str(self.ssl_certfile), keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"ssl_certfile/ssl_keyfile: cannot load: {_tls_reason(exc)}"
                ) from None
        return context


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or type(exc).__name__)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


class Worker(_Frozen):
    """How the stream worker runs (revmon's own keys, not in SPEC §8)."""

    app_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")] = "revmon"
    store: Literal["rocksdb", "memory"] = "rocksdb"
    data_dir: Path = Path(".revmon-data")
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    rebalance_timeout: PositiveDuration = 5.0
    session_timeout: Annotated[Duration, Field(ge=6)] = 10.0
    #: A fixed number of journaled changes between snapshots, instead of the adaptive rule
    #: (at least 50,000 and at least the state's size). Each snapshot writes the whole state.
    snapshot_every: Annotated[int, Field(ge=1)] | None = None


class Topics(_Frozen):
    """Topic names (SPEC §1 and §6)."""

    crm: str = "revmon.crm.events"
    marketing: str = "revmon.marketing.events"
    billing: str = "revmon.billing.events"
    dead_letter: str = "revmon.events.dlq"
    metrics: str = "revmon.metrics"
    alerts: str = "revmon.alerts"

    @property
    def inputs(self) -> tuple[str, str, str]:
        """The three input topics, in a fixed order."""
        return (self.crm, self.marketing, self.billing)

    @model_validator(mode="after")
    def _distinct(self) -> Topics:
        names = [self.crm, self.marketing, self.billing, self.dead_letter, self.metrics]
        if len({*names, self.alerts}) != 6:
            raise ValueError("every topic needs its own name")
        return self


class Funnel(_Frozen):
    """Ordered open stages plus the converted and dropped terminal stages (SPEC §2)."""

    stages: Annotated[tuple[StageName, ...], Field(min_length=1)]
    converted: StageName
    dropped: tuple[StageName, ...] = ()
    sla: dict[str, PositiveDuration] = Field(default_factory=dict)
    #: v2 (SPEC §2): seconds after which an entity untouched in an open stage is dropped.
    expire: dict[str, PositiveDuration] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_sla(cls, data: Any) -> Any:
        if isinstance(data, dict):
            stages = data.get("stages") or ()
            sla = dict(data.get("sla") or {})
            for stage in stages:
                if isinstance(stage, str) and stage in DEFAULT_SLA:
                    sla.setdefault(stage, DEFAULT_SLA[stage])
            data = {**data, "sla": sla}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Funnel:
        every = [*self.stages, self.converted, *self.dropped]
        if len(set(every)) != len(every):
            raise ValueError("a stage name appears twice in the funnel")
        unknown = sorted(set(self.sla) - set(self.stages))
        if unknown:
            raise ValueError(f"sla names stages that are not open stages: {', '.join(unknown)}")
        unknown = sorted(set(self.expire) - set(self.stages))
        if unknown:
            raise ValueError(f"expire names stages that are not open stages: {', '.join(unknown)}")
        if self.expire and not self.dropped:
            raise ValueError("expire needs a dropped stage to send expired entities to")
        return self

    @property
    def all_stages(self) -> tuple[str, ...]:
        """Open stages in order, then converted, then dropped."""
        return (*self.stages, self.converted, *self.dropped)


class Funnels(_Frozen):
    """The two funnels."""

    lead: Funnel
    opportunity: Funnel


class Marketing(_Frozen):
    """Known marketing channels; any other channel counts as `other`."""

    channels: tuple[StageName, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """Every channel label that can be exported, `other` included."""
        return (*self.channels, *(() if "other" in self.channels else ("other",)))


def _segment_bound_name(value: Decimal) -> str:
    for size, suffix in ((Decimal(10**9), "b"), (Decimal(10**6), "m"), (Decimal(10**3), "k")):
        if value >= size and value % size == 0:
            return f"{value // size}{suffix}"
    return format(value.normalize(), "f")


class Segments(_Frozen):
    """Account segments by 365-day paid revenue (SPEC §3.7)."""

    boundaries: Annotated[tuple[Decimal, ...], Field(min_length=1)]
    cadence: dict[str, PositiveDuration] = Field(default_factory=dict)

    @field_validator("boundaries")
    @classmethod
    def _increasing(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if value[0] != 0:
            raise ValueError("the first boundary must be 0 (segment `zero` is revenue <= 0)")
        if any(b >= a for a, b in zip(value[1:], value, strict=False)):
            raise ValueError("boundaries must be strictly increasing")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_cadence(cls, data: Any) -> Any:
        if isinstance(data, dict) and "boundaries" in data:
            try:
                names = segment_names([Decimal(str(b)) for b in data["boundaries"]])
            except ArithmeticError:
                return data
            cadence = dict(data.get("cadence") or {})
            for name in names:
                if name in DEFAULT_CADENCE:
                    cadence.setdefault(name, DEFAULT_CADENCE[name])
            data = {**data, "cadence": cadence}
        return data

    @model_validator(mode="after")
    def _known_segments(self) -> Segments:
        unknown = sorted(set(self.cadence) - set(self.names))
        if unknown:
            raise ValueError(f"cadence names unknown segments: {', '.join(unknown)}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """Segment labels, lowest first."""
        return segment_names(list(self.boundaries))


def segment_names(boundaries: list[Decimal]) -> tuple[str, ...]:
    """`zero`, `lt_<b1>`, `<b1>_<b2>`, ..., `<bn>_plus` for boundaries [0, b1, ..., bn]."""
    names = ["zero"]
    bounds = [_segment_bound_name(b) for b in boundaries]
    if len(bounds) > 1:
        names.append(f"lt_{bounds[1]}")
        names.extend(f"{lo}_{hi}" for lo, hi in itertools.pairwise(bounds[1:]))
        names.append(f"{bounds[-1]}_plus")
    else:
        names.append("0_plus")
    return tuple(names)


class Pipeline(_Frozen):
    """Pipeline settings (SPEC §3.4)."""

    required_coverage: Annotated[Decimal, Field(gt=0)] = Decimal(3)


_PERIOD = re.compile(r"^\d{4}-(Q[1-4]|(0[1-9]|1[0-2]))$")


class Target(_Frozen):
    """A revenue target for a calendar quarter (`2026-Q4`) or month (`2026-11`)."""

    period: str
    kind: Literal["new_business", "expansion", "renewal", "all"]
    amount: Annotated[Decimal, Field(ge=0)]

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        if not _PERIOD.match(value):
            raise ValueError("period must be a quarter like 2026-Q4 or a month like 2026-11")
        return value


#: Gauges of SPEC §3.9 a rule may watch besides §3.1–§3.8 (global, owner-exported).
_RULE_OPERATIONS_GAUGES = frozenset({"revmon_watermark_seconds", "revmon_event_lag_seconds"})


class AlertRule(_Frozen):
    """One threshold rule (SPEC §5); evaluated by the daemon and exported by `revmon rules`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    metric: Annotated[str, Field(pattern=r"^revmon_[a-z0-9_]+$")]
    labels: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    for_: Annotated[Duration, Field(alias="for")] = 0.0
    clear: float | None = None
    keep_firing_for: Duration = 0.0
    severity: Literal["warning", "critical"] = "warning"
    summary: str = ""
    description: str = ""
    runbook_url: str | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _named(cls, data: Any, handler: Any) -> Any:
        # Every error of a rule names the rule, not only its position in the list.
        try:
            return handler(data)
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else None
            raise ValueError(f"rule {name or '(unnamed)'}: {_describe(exc)}") from None

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        family = FAMILIES.get(self.metric)
        watchable = family is not None and family.kind == "gauge"
        if (
            family is None
            or not watchable
            or not (family.is_state or self.metric in _RULE_OPERATIONS_GAUGES)
        ):
            raise ValueError(
                f"rule {self.name}: metric {self.metric} is not an exported gauge "
                "revmon can alert on"
            )
        unknown = sorted(set(self.labels) - set(family.labels))
        if unknown:
            have = ", ".join(family.labels) or "no labels"
            raise ValueError(
                f"rule {self.name}: {self.metric} has no label {unknown[0]} (it has {have})"
            )
        for key, value in self.labels.items():
            if isinstance(value, tuple) and not value:
                raise ValueError(f"rule {self.name}: labels.{key}: an empty list matches nothing")
        if self.clear is not None:
            above = self.op in (">", ">=")
            if (above and self.clear > self.threshold) or (
                not above and self.clear < self.threshold
            ):
                side = "at or below" if above else "at or above"
                raise ValueError(
                    f"rule {self.name}: clear must be {side} the threshold {self.threshold:g}"
                )
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when a series with `labels` is one of the rule's (a list value: any of them)."""
        for key, wanted in self.labels.items():
            value = labels.get(key)
            if isinstance(wanted, tuple):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return True


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


def _check_window(value: str) -> str:
    _positive(parse_duration(value))
    return value.strip()


def _check_http_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        # urllib's message repeats the text it could not parse, which may hold a secret.
        raise ValueError("not a valid URL (is the port a number from 0 to 65535?)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        # A URL is logged and printed in many places; credentials have keys of their own.
        raise ValueError(
            "credentials do not belong in the URL: use alertmanager_username and "
            "alertmanager_password (or alertmanager_password_file)"
        )
    return value


def _check_web_config(value: Path | None) -> Path | None:
    if value is not None:
        load_web_config(value)  # raises WebConfigError, a ValueError naming the problem
    return value


def _check_broker(value: str) -> str:
    if value == "embedded":
        return value
    if not value.startswith("kafka://") or not value[len("kafka://") :].strip(","):
        raise ValueError("broker must be `embedded` or kafka://host:port[,host:port...]")
    if "@" in value:
        raise ValueError(
            "credentials do not belong in the broker URL: use kafka.sasl_username and "
            "kafka.sasl_password (or kafka.sasl_password_file)"
        )
    for server in value[len("kafka://") :].split(","):
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"broker address {server!r} is not host:port")
    return value


class Settings(BaseSettings):
    """Everything revmon is configured by; built once at start, then passed explicitly."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    broker: Annotated[str, AfterValidator(_check_broker)]
    broker_wait: PositiveDuration
    embedded_port: Annotated[int, Field(ge=0, le=65535)]
    kafka: KafkaSecurity
    clock: Literal["wall", "event"]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    timezone: Annotated[str, AfterValidator(_check_zone)]
    web_host: str
    web_port: Annotated[int, Field(ge=0, le=65535)]
    web_config: Annotated[Path | None, AfterValidator(_check_web_config)]
    windows: Annotated[
        tuple[Annotated[str, AfterValidator(_check_window)], ...], Field(min_length=1)
    ]
    publish_interval: PositiveDuration
    dedupe_horizon: PositiveDuration
    #: How long after its close a closed lead or opportunity is remembered (None: always).
    closed_retention: OptionalDuration
    alertmanager_url: Annotated[str | None, AfterValidator(_check_http_url)]
    alertmanager_username: Annotated[str, Field(min_length=1)] | None
    alertmanager_password: SecretStr | None
    alertmanager_password_file: Path | None
    alerts_interval: PositiveDuration
    alerts_resend: PositiveDuration
    source_silence: PositiveDuration
    partitions: Annotated[int, Field(ge=1, le=1024)]
    worker: Worker
    topics: Topics
    funnels: Funnels
    marketing: Marketing
    segments: Segments
    pipeline: Pipeline
    targets: tuple[Target, ...]
    alerts: tuple[AlertRule, ...]

    @model_validator(mode="after")
    def _alertmanager_credentials(self) -> Settings:
        if self.alertmanager_password_file is not None:
            if self.alertmanager_password is not None:
                raise ValueError(
                    "alertmanager_password: give it or alertmanager_password_file, not both"
                )
            secret = read_secret(self.alertmanager_password_file, "alertmanager_password_file")
            object.__setattr__(self, "alertmanager_password", secret)
        user, password = self.alertmanager_username, self.alertmanager_password
        if (user is None) != (password is None):
            missing = "alertmanager_password" if password is None else "alertmanager_username"
            raise ValueError(f"{missing}: basic auth needs both a user name and a password")
        if user is not None and self.alertmanager_url is None:
            raise ValueError("alertmanager_username: set alertmanager_url too")
        return self

    @model_validator(mode="after")
    def _retention_outlasts_windows(self) -> Settings:
        # Forgetting a closed entity must not change a number any window can still see.
        if self.closed_retention is not None:
            floor = max(CLOSED_RETENTION_FLOOR, *(w.seconds for w in self.window_list))
            if self.closed_retention < floor:
                raise ValueError(
                    f"closed_retention: at least {floor / 86_400:g}d (the longest any "
                    "metric looks back), or null to remember closed entities always"
                )
        return self

    @model_validator(mode="after")
    def _embedded_is_plaintext(self) -> Settings:
        if self.broker == "embedded" and self.kafka.security_protocol != "PLAINTEXT":
            raise ValueError(
                "kafka.security_protocol: the embedded broker speaks PLAINTEXT on loopback; "
                "TLS and SASL are for `broker: kafka://...`"
            )
        return self

    @property
    def alertmanager_auth(self) -> tuple[str, str] | None:
        """(user, password) of Alertmanager's basic auth, or None."""
        if self.alertmanager_username is None or self.alertmanager_password is None:
            return None
        return self.alertmanager_username, self.alertmanager_password.get_secret_value()

    @field_validator("alerts")
    @classmethod
    def _distinct_rules(cls, value: tuple[AlertRule, ...]) -> tuple[AlertRule, ...]:
        seen: set[str] = set()
        for rule in value:
            if rule.name in seen:
                raise ValueError(f"rule {rule.name}: the name is used by another rule")
            seen.add(rule.name)
        return value

    @field_validator("windows")
    @classmethod
    def _distinct_windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a window is listed twice")
        return value

    @property
    def window_list(self) -> tuple[Window, ...]:
        """The configured windows with their lengths in seconds."""
        return tuple(Window(label, parse_duration(label)) for label in self.windows)

    @property
    def bootstrap_servers(self) -> str | None:
        """`host:port,...` of an external cluster, or None for the embedded broker."""
        if self.broker == "embedded":
            return None
        return self.broker[len("kafka://") :]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first; pydantic-settings deep-merges mappings across sources,
        # which is SPEC §8's "a mapping merges key by key with its defaults".
        return (
            init_settings,  # keyword overrides of load_settings()
            _StrictEnvSource(settings_cls),
            _DictSource(settings_cls, _FILE_VALUES.get() or {}),
            _DictSource(settings_cls, default_values()),
        )


class _DictSource(PydanticBaseSettingsSource):
    """A fixed mapping as a settings source (the packaged defaults)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class _StrictEnvSource(EnvSettingsSource):
    """REVMON_* variables; one that names no key is an error, not silently ignored."""

    def __call__(self) -> dict[str, Any]:
        known = {name.upper() for name in self.settings_cls.model_fields}
        ours = {
            name: value
            for name, value in os.environ.items()
            if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_ENV
        }
        for name in ours:
            head = name.upper()[len(ENV_PREFIX) :].split("__", 1)[0]
            if head not in known:
                raise _EnvKeyError(name, "no such key")
        try:
            return super().__call__()
        except ValueError as exc:
            # pydantic-settings names only the top-level field (and its own class name);
            # find the variable itself.
            field = re.search(r'field "([^"]+)"', str(exc))
            for name, value in ours.items():
                try:
                    json.loads(value)
                except ValueError:
                    head = name.upper()[len(ENV_PREFIX) :].split("__", 1)[0]
                    named = field is not None and head == field.group(1).upper()
                    if named or "__" in name or value.lstrip()[:1] in ("[", "{"):
                        raise _EnvKeyError(
                            name,
                            "not valid JSON (lists and mappings are given as JSON, "
                            f'e.g. {ENV_PREFIX}WINDOWS=\'["7d", "30d"]\')',
                        ) from exc
            raise


class _EnvKeyError(Exception):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(name)
        self.name = name
        self.problem = problem


# The YAML file being loaded, a settings source below REVMON_* variables.
_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("revmon_file_values", default=None)


def default_values() -> dict[str, Any]:
    """The packaged defaults (`revmon/defaults.yaml`) as plain data."""
    text = (Path(__file__).parent / "defaults.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {path} is not UTF-8 text (line {line})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of keys")
    return data


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
        msg = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = "unknown key"
        if not loc and _NAMES_A_KEY.match(msg):
            parts.append(msg)  # a check across keys that names the key itself
        else:
            parts.append(f"{loc or '(top level)'}: {msg}")
    return "; ".join(parts)


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the frozen settings: defaults < file (`path` or $REVMON_CONFIG) < REVMON_* < overrides.

    Raises:
        ConfigError: one line naming the offending key.
    """
    file_path = path if path is not None else os.environ.get(CONFIG_ENV)
    token = _FILE_VALUES.set(_read_yaml(Path(file_path)) if file_path else {})
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid config: {_describe(exc)}") from None
    except _EnvKeyError as exc:
        raise ConfigError(f"invalid config: {exc.name}: {exc.problem}") from None
    except ValueError as exc:  # pydantic-settings: a REVMON_* value that is not valid JSON
        raise ConfigError(f"invalid config: {exc}") from None
    finally:
        _FILE_VALUES.reset(token)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret replaced by `********`."""
    data = settings.model_dump(mode="json", by_alias=True)
    kafka = data["kafka"]
    if kafka.get("sasl_password") is not None:
        kafka["sasl_password"] = MASK
    if data.get("alertmanager_password") is not None:
        data["alertmanager_password"] = MASK
    return data


MASK = "********"
