"""The settings' schema: every section and key of a station config, with its defaults,
its checks and its description (what ``anbo check`` and ``--help`` print).

Pure models: nothing here reads a file or the environment (that is
:mod:`monitor.settings.loader`).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.schedule import Schedule
from monitor.wire import is_segment

# The channel plans live in probes (pure); re-exported here for the settings' users.
from probes.channels import DS_MAX as DS_MAX
from probes.channels import DS_MIN as DS_MIN
from probes.channels import FM_MAX_MHZ as FM_MAX_MHZ
from probes.channels import FM_MIN_MHZ as FM_MIN_MHZ
from probes.channels import ds_channel_centre_mhz as ds_channel_centre_mhz
from probes.channels import ds_channel_lower_edge_mhz as ds_channel_lower_edge_mhz
from probes.channels import ds_channel_number as ds_channel_number
from probes.channels import fm_frequency_problem
from probes.migration import MigrationKind, MigrationPlan
from rules import InhibitRule, MaintenanceWindow
from rules.catalogue import valid_name as valid_reading_name

ENV_PREFIX = "ANBO_"
#: Environment variables with the ``ANBO_`` prefix that are not settings.
ENV_NOT_SETTINGS = frozenset({"ANBO_CONFIG"})

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")
#: Labels anbo sets itself on per-target series; user labels may not shadow them.
RESERVED_LABELS = frozenset(
    {
        "station",
        "target",
        "kind",
        "service",
        "stream",
        "name",
        "value",
        "reason",
        "result",
        "job",
        "instance",
        "alertname",
        "severity",
        "le",
        "quantile",
    }
)


class Strict(BaseModel):
    """Base for every settings section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_or_many(value: Any) -> Any:
    """A list, or a string: a JSON list (``'["mqtt://a","mqtt://b"]'``) or URLs
    separated by commas or spaces (the environment carries strings)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a valid JSON list: {exc}") from None
    return [u for u in re.split(r"[,\s]+", text) if u]


def _endpoints(value: Any) -> Any:
    """Endpoints given as tables (``{url = ..., timeout = ...}``), bare URL strings, or a mix;
    from the environment also a JSON list or one URL (or several, separated by commas or
    spaces): ``ANBO_ALERTING__ALERTMANAGERS='["http://am:9093"]'`` or ``http://am:9093``."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a valid JSON table: {exc}") from None
        else:
            value = _one_or_many(text)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list | tuple):
        return [{"url": v} if isinstance(v, str) else v for v in value]
    return value


class MqttSettings(Strict):
    """``[mqtt]``: the broker connection."""

    url: Annotated[list[str], NoDecode, BeforeValidator(_one_or_many)] = Field(
        default_factory=lambda: ["mqtt://127.0.0.1:1883"],
        description="One URL or a list for failover, tried in order: mqtt://host:port or mqtts://",
    )
    client_id: str = Field(default="", description="Fixed client id; default anbo-<station>")
    username: str | None = None
    password_file: str | None = Field(
        default=None,
        description="File holding the password; a bare name is looked up in $CREDENTIALS_DIRECTORY",
    )
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: int = Field(default=30, ge=5, le=3600)
    qos: Literal[0, 1, 2] = 1
    session_expiry: int = Field(
        default=3600, ge=0, description="MQTT v5 session expiry (s): how long the broker queues"
    )
    topic_prefix: str = "anbo"
    queue_size: int = Field(default=20_000, ge=16, le=10_000_000)
    backoff_min: float = Field(default=0.5, gt=0, le=60)
    backoff_max: float = Field(default=30.0, gt=0, le=3600)
    max_payload_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)

    @field_validator("url")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("at least one broker URL is required")
        for url in urls:
            parse_broker_url(url)
        return urls

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, prefix: str) -> str:
        parts = prefix.split("/")
        if not all(is_segment(p) for p in parts):
            raise ValueError(f"{prefix!r} is not a valid topic prefix (levels of [A-Za-z0-9_.-])")
        return prefix

    @model_validator(mode="after")
    def _check_pairs(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        if self.backoff_min > self.backoff_max:
            raise ValueError("backoff_min must not exceed backoff_max")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username")
        return self


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    url: str
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (IPv6 in brackets)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r}: scheme must be mqtt:// or mqtts://")
    if parts.username or parts.password:
        raise ValueError(f"{url!r}: credentials do not belong in the URL; use username/password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a broker URL has no path, query or fragment")
    if not parts.hostname:
        raise ValueError(f"{url!r}: missing host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: bad port") from exc
    tls = parts.scheme == "mqtts"
    return BrokerAddress(url, parts.hostname, port or (8883 if tls else 1883), tls)


def parse_listen(value: str) -> tuple[str, int]:
    """Parse ``host:port`` / ``[v6]:port``; port 0 asks the kernel for a free port."""
    host, sep, port_s = value.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ValueError(f"{value!r}: expected host:port")
    port = int(port_s)
    if port > 65535:
        raise ValueError(f"{value!r}: port out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError(f"{value!r}: missing host (use 0.0.0.0 or [::] for all)")
    return host, port


def _listen_address(value: str) -> str:
    parse_listen(value)
    return value


#: ``host:port`` / ``[v6]:port`` of a listener, checked by :func:`parse_listen`.
ListenAddress = Annotated[str, AfterValidator(_listen_address)]


class MetricsSettings(Strict):
    """``[metrics]``: the HTTP endpoint Prometheus scrapes."""

    listen: ListenAddress = "127.0.0.1:9872"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: Optional HTTP basic auth of the whole listener: a user and a file holding its bcrypt hash.
    basic_auth_user: str | None = None
    basic_auth_hash_file: str | None = None
    #: With basic auth: leave /metrics open for Prometheus.
    metrics_open: bool = False

    @model_validator(mode="after")
    def _check_pair(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        if (self.basic_auth_user is None) != (self.basic_auth_hash_file is None):
            raise ValueError("basic_auth_user and basic_auth_hash_file must be given together")
        return self

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class LoggingSettings(Strict):
    """``[logging]``."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


def check_station_name(name: str) -> str:
    """A station name is a topic level ([A-Za-z0-9_.-]{1,64}), and not the reserved ``eb``."""
    if not is_segment(name) or name == "eb":
        raise ValueError(f"{name!r}: station name must match [A-Za-z0-9_.-]{{1,64}} and not be 'eb'")
    return name


class StationSettings(Strict):
    """``[station]``: who we are."""

    name: str
    description: str = ""
    station_class: Literal[1, 2, 3] = Field(
        default=3, description="Safe-transmission class: 1 central/provincial, 2 prefecture, 3 county"
    )
    county: str = Field(default="", description="County (district, banner) the bureau groups it under")

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        return check_station_name(name)


class TargetKind(StrEnum):
    FM = "fm"
    DTV = "dtv"
    TX = "tx"


#: Streams a target accepts when its config does not list them.
DEFAULT_STREAMS: dict[TargetKind, tuple[str, ...]] = {
    TargetKind.FM: ("rf", "audio"),
    TargetKind.DTV: ("rf", "audio"),
    TargetKind.TX: ("status",),
}


class TargetSettings(Strict):
    """``[[targets]]``: one monitored service or transmitter."""

    name: str
    kind: TargetKind
    service: str = Field(default="", description="Programme service name, e.g. 'Qingshan News'")
    frequency_mhz: float | None = Field(default=None, description="FM frequency (87–108, 0.1 raster)")
    channel: int | str | None = Field(default=None, description="DTV DS channel, e.g. 'DS-21'")
    serves: list[str] = Field(default_factory=list, description="tx: targets this transmitter feeds")
    params: dict[str, float | str] = Field(
        default_factory=dict,
        description="References rules compare against: rds_pi, rf_reference_dbuv, rated_power_w...",
    )
    streams: list[str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    extra_readings: list[str] = Field(
        default_factory=list,
        description="Reading names (values or info) beyond the measurement catalogue that this "
        "target's publisher sends: kept, exported and readable by rules; any other name is dropped",
    )

    @field_validator("extra_readings")
    @classmethod
    def _check_extra_readings(cls, names: list[str]) -> list[str]:
        for n in names:
            if not valid_reading_name(n):
                raise ValueError(f"{n!r}: a reading name must match [a-z][a-z0-9_]{{0,63}}")
        if len(set(names)) != len(names):
            raise ValueError("duplicate names")
        return names

    schedule: Schedule | None = Field(
        default=None, description="Weekly on-air windows (time zone); none: on air 24/7"
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not is_segment(name):
            raise ValueError(f"{name!r}: target name must match [A-Za-z0-9_.-]{{1,64}}")
        return name

    @field_validator("streams")
    @classmethod
    def _check_streams(cls, streams: list[str] | None) -> list[str] | None:
        if streams is not None:
            if not streams:
                raise ValueError("streams, when given, must not be empty")
            for s in streams:
                if not is_segment(s):
                    raise ValueError(f"{s!r}: stream name must match [A-Za-z0-9_.-]{{1,64}}")
            if len(set(streams)) != len(streams):
                raise ValueError("duplicate stream names")
        return streams

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not LABEL_NAME_RE.match(key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a valid Prometheus label name")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is reserved: anbo sets it itself")
        return labels

    @model_validator(mode="after")
    def _check_kind(self) -> Self:
        if self.kind is TargetKind.FM:
            if self.frequency_mhz is None:
                raise ValueError("an fm target needs frequency_mhz")
            problem = fm_frequency_problem(self.frequency_mhz)
            if problem is not None:
                raise ValueError(f"frequency_mhz: {problem}")
            if self.channel is not None:
                raise ValueError("an fm target has frequency_mhz, not channel")
        elif self.kind is TargetKind.DTV:
            if self.channel is None:
                raise ValueError("a dtv target needs channel (e.g. 'DS-21')")
            ds_channel_number(self.channel)
            if self.frequency_mhz is not None:
                raise ValueError("a dtv target has channel, not frequency_mhz")
        if self.kind is not TargetKind.TX and self.serves:
            raise ValueError("serves is only for tx targets")
        if self.kind is not TargetKind.TX and not self.service:
            raise ValueError(f"a {self.kind.value} target needs service (the programme name)")
        return self

    @property
    def ds_channel(self) -> int | None:
        return None if self.channel is None else ds_channel_number(self.channel)

    @property
    def accepted_streams(self) -> tuple[str, ...]:
        return tuple(self.streams) if self.streams is not None else DEFAULT_STREAMS[self.kind]

    @property
    def frequency_label(self) -> str:
        if self.frequency_mhz is not None:
            return f"{self.frequency_mhz:.1f} MHz"
        if self.ds_channel is not None:
            return f"DS-{self.ds_channel} ({ds_channel_centre_mhz(self.ds_channel):.0f} MHz)"
        return ""


class ProbeSettings(Strict):
    """``[probes]``: how measurements are taken (defaults from domain practice)."""

    tick: float = Field(default=1.0, ge=0.1, le=60.0, description="Evaluation interval (s)")
    silence_on_dbfs: float = Field(default=-40.0, le=0.0, description="Silent below this level (dBFS)")
    silence_off_dbfs: float = Field(default=-30.0, le=0.0, description="Programme from this level (dBFS)")
    silence_on_s: float = Field(default=10.0, gt=0.0, description="Silent this long: silence (s)")
    silence_off_s: float = Field(
        default=5.0, gt=0.0, description="Loud half of this window: programme again, from its start (s)"
    )
    hiss_on_s: float = Field(default=5.0, gt=0.0)
    tone_on_s: float = Field(default=10.0, gt=0.0)
    deemphasis_us: float | None = Field(default=None, description="FM receivers' de-emphasis: 50 in China")
    audio_stale_after: float = Field(default=3.0, gt=0.0, description="No audio this long: unknown (s)")
    readings_stale_after: float = Field(default=30.0, gt=0.0, description="Readings older: unknown (s)")

    @model_validator(mode="after")
    def _check_hysteresis(self) -> Self:
        if self.silence_off_dbfs < self.silence_on_dbfs:
            raise ValueError("silence_off_dbfs must be >= silence_on_dbfs (hysteresis)")
        return self


class AlertmanagerSettings(Strict):
    """``[[alerting.alertmanagers]]``: one Alertmanager (list both of an HA pair)."""

    url: str
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    username: str | None = None
    password_file: str | None = None
    bearer_token_file: str | None = None
    timeout: float = Field(default=10.0, gt=0.0, le=120.0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: expected http(s)://host:port of an Alertmanager")
        if parts.username or parts.password:
            raise ValueError(f"{url!r}: credentials do not belong in the URL; use username/password_file")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        if self.password_file and self.bearer_token_file:
            raise ValueError("use either basic auth (username/password_file) or bearer_token_file")
        if (self.password_file is None) != (self.username is None):
            raise ValueError("username and password_file must be given together")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        return self


class AlertingSettings(Strict):
    """``[alerting]``: rules and where alerts go."""

    alertmanagers: Annotated[list[AlertmanagerSettings], NoDecode, BeforeValidator(_endpoints)] = Field(
        default_factory=list
    )
    rule_paths: list[Path] = Field(
        default_factory=list, description="Operator rule files or folders, after the built-in packs"
    )
    builtin_rules: bool = True
    resend_interval: float = Field(default=60.0, ge=1.0, le=3600.0)
    stale_after: float = Field(default=30.0, gt=0.0, description="No telemetry this long: TelemetryLost")
    flap_threshold: int = Field(default=6, ge=1)
    flap_window: float = Field(default=600.0, gt=0.0)
    #: None: the engine's defaults (carrier loss inhibits dead air, hiss, pilot, RDS...)
    inhibit_rules: list[InhibitRule] | None = None
    restore_tolerance: float = Field(
        default=900.0, ge=0.0, description="Restarted within this long: firing alerts keep startsAt"
    )
    generator_url: str = ""
    #: Base of every built-in alert's runbook link (alert name appended); empty: the
    #: console's own address, http(s)://<host>:<port>/runbooks/ from [metrics] listen.
    runbook_base_url: str = ""
    #: The language of the summary/description Alertmanager receives.
    language: Literal["en", "zh"] = "en"

    @model_validator(mode="after")
    def _check_unique(self) -> Self:
        urls = [a.url for a in self.alertmanagers]
        if len(set(urls)) != len(urls):
            raise ValueError("the same Alertmanager is listed twice")
        return self


class EbSettings(Strict):
    """``[eb]``: the emergency-broadcast endpoint fleet this anbo watches."""

    inventory: list[Path] = Field(
        default_factory=list, description="Endpoint inventory files (CSV or TOML), relative to this file"
    )
    region_level: Literal["county", "township"] = "township"
    offline_after: float = Field(default=180.0, gt=0.0, description="No heartbeat this long: offline (s)")
    dispatch_deadlines: list[float] = Field(default_factory=lambda: [60.0, 120.0, 300.0])
    dispatch_retention: float = Field(default=3600.0, gt=0.0)
    #: The endpoint segment the broadcast platform publishes dispatches under.
    platform: str = "platform"
    #: Rule params of every region and dispatch (eb_min_online_ratio, dispatch_min_coverage...).
    params: dict[str, float | str] = Field(default_factory=dict)
    #: Most endpoint ids listed in an alert annotation or a status line before "+N more".
    max_ids: int = Field(default=20, ge=1, le=1000)

    @field_validator("dispatch_deadlines")
    @classmethod
    def _check_deadlines(cls, deadlines: list[float]) -> list[float]:
        if not deadlines or any(not (math.isfinite(d) and d > 0) for d in deadlines):
            raise ValueError("dispatch_deadlines: one or more positive durations (s)")
        return sorted(deadlines)


class MigrationSettings(Strict):
    """``[[migrations]]``: one service moving channel (700 MHz clearance) or frequency (改频)."""

    name: str
    service: str
    kind: Literal["fm", "dtv"]
    old_channel: int | str | None = None
    new_channel: int | str | None = None
    old_frequency_mhz: float | None = None
    new_frequency_mhz: float | None = None
    simulcast_start: datetime
    cutover: datetime
    rds_pi: str | None = None
    service_id: int | None = None
    ts_id: int | None = None
    params: dict[str, float | str] = Field(default_factory=dict)

    @field_validator("old_channel", "new_channel")
    @classmethod
    def _check_channel(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            ds_channel_number(value)  # a channel off the UHF plan: ValueError, reported like targets'
        return value

    @field_validator("simulcast_start", "cutover")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the UTC offset, e.g. 2026-12-15T02:00:00+08:00")
        return value

    def plan(self) -> MigrationPlan:
        return MigrationPlan(
            name=self.name,
            service=self.service,
            kind=MigrationKind(self.kind),
            simulcast_start=self.simulcast_start.timestamp(),
            cutover=self.cutover.timestamp(),
            old_channel=None if self.old_channel is None else ds_channel_number(self.old_channel),
            new_channel=None if self.new_channel is None else ds_channel_number(self.new_channel),
            old_frequency_mhz=self.old_frequency_mhz,
            new_frequency_mhz=self.new_frequency_mhz,
            rds_pi=self.rds_pi,
            service_id=self.service_id,
            ts_id=self.ts_id,
        )


class LedgerSettings(Strict):
    """``[ledger]``: the outage ledger (SQLite in the state directory) and its reports."""

    enabled: bool = True
    path: Path | None = Field(default=None, description="Default: <state_directory>/ledger.sqlite3")
    heartbeat: float = Field(default=10.0, gt=0, le=60, description="Seconds between heartbeat writes")
    pending_max: int = Field(default=10_000, ge=10, description="Rows kept in memory while unwritable")
    report_tz: str = Field(default="Asia/Shanghai", description="Zone of report days and quarters")
    filler_share: float = Field(default=0.5, ge=0, le=1, description="Share of filler time counted")
    #: 停播率 targets in seconds per 100 scheduled hours: station class ("1"–"3") → service
    #: kind (fm, dtv) → limit. None shipped: the bureau sets them (see docs/ledger.md).
    class_targets: dict[str, dict[str, float]] = Field(default_factory=dict)

    @field_validator("report_tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from None
        return value

    @field_validator("class_targets")
    @classmethod
    def _classes(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for key, kinds in value.items():
            if key not in ("1", "2", "3"):
                raise ValueError(f"class_targets: station class {key!r} must be 1, 2 or 3")
            for kind, limit in kinds.items():
                if limit < 0:
                    raise ValueError(f"class_targets.{key}.{kind}: a limit cannot be negative")
        return value


class BureauSettings(Strict):
    """``[bureau]``: the station's events for the bureau tier (monitor/events.py)."""

    enabled: bool = Field(default=True, description="Publish ledger intervals, alerts, heartbeats")
    topic_prefix: str = Field(default="anbo", description="Events go to <prefix>/<station>/events/v1/...")
    heartbeat: float = Field(default=10.0, gt=0, le=300, description="Seconds between heartbeats")
    resend_after: float = Field(
        default=30.0, gt=0, le=3600, description="Publish again what the bureau has not acknowledged"
    )

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, prefix: str) -> str:
        if not all(is_segment(p) for p in prefix.split("/")):
            raise ValueError(f"{prefix!r} is not a valid topic prefix (levels of [A-Za-z0-9_.-])")
        return prefix


#: Capture input schemes (``[[capture.inputs]] url``, ``anbo capture --input``): what each reads.
CAPTURE_SCHEMES: dict[str, str] = {
    "http": "an Icecast/HTTP stream or an HLS playlist (http://host:port/mount)",
    "https": "the same over TLS",
    "rtp": "RTP, unicast or multicast (rtp://239.1.2.3:5004)",
    "udp": "MPEG-TS or raw over UDP, unicast or multicast (udp://239.1.2.3:1234)",
    "srt": "an SRT stream (srt://host:port?mode=caller)",
    "rtsp": "an RTSP source (rtsp://host/path)",
    "alsa": "an ALSA capture device (alsa:hw:1,0, alsa:default)",
    "pulse": "a PulseAudio source (pulse:alsa_input.usb-..., pulse:default)",
    "file": "a recording, played in real time unless --fast (file:prog.wav); for tests and a quick try",
}
_NETWORK_SCHEMES = frozenset({"http", "https", "rtp", "udp", "srt", "rtsp"})
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class CaptureSource:
    """One parsed capture input: ``scheme`` (a key of :data:`CAPTURE_SCHEMES`) and what
    ffmpeg reads (the whole URL for network sources, the device, source or path else)."""

    scheme: str
    location: str

    @property
    def is_file(self) -> bool:
        return self.scheme == "file"

    @property
    def is_device(self) -> bool:
        return self.scheme in ("alsa", "pulse")


def parse_capture_source(url: str) -> CaptureSource:
    """Parse a capture input URL; ``ValueError`` says what is wrong with it."""
    if not url:
        raise ValueError("empty input URL")
    if len(url) > 2048:
        raise ValueError("input URL longer than 2048 characters")
    if _BAD_URL_CHARS.search(url):
        raise ValueError(f"{url[:80]!r}: spaces and control characters are not allowed in an input URL")
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in CAPTURE_SCHEMES:
        raise ValueError(
            f"{url[:80]!r}: unknown input scheme; use one of {', '.join(f'{k}:' for k in CAPTURE_SCHEMES)}"
        )
    if scheme in _NETWORK_SCHEMES:
        parts = urlsplit(url)
        if not rest.startswith("//") or not parts.hostname:
            raise ValueError(f"{url[:80]!r}: a {scheme} input needs {scheme}://host[:port]...")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{url[:80]!r}: bad port") from None
        if scheme in ("rtp", "udp", "srt") and port is None:
            raise ValueError(f"{url[:80]!r}: a {scheme} input needs a port")
        return CaptureSource(scheme, url)
    if scheme == "file":
        path = rest.removeprefix("//") if rest.startswith("///") else rest
        if not path or path.startswith("//"):
            raise ValueError(f"{url[:80]!r}: a file input is file:PATH (file:prog.wav, file:/srv/prog.wav)")
        return CaptureSource(scheme, path)
    device = rest or ("default" if scheme == "pulse" else "")
    if not device or device.startswith("-"):
        raise ValueError(
            f"{url[:80]!r}: an {scheme} input names its device ({scheme}:hw:1,0, {scheme}:default)"
        )
    return CaptureSource(scheme, device)


SampleType = Literal["int16", "float32"]


class CaptureInput(Strict):
    """``[[capture.inputs]]``: one audio input of the capture gateway and the target it feeds."""

    target: str = Field(description="The fm or dtv target whose audio stream this input feeds")
    url: str = Field(
        description="Where to read: http://, https://, rtp://, udp://, srt://, rtsp://, alsa:, pulse:, file:"
    )
    channels: int | None = Field(default=None, ge=1, le=32, description="Default [capture] channels")
    rate: int | None = Field(default=None, ge=8000, le=192_000, description="Default [capture] rate")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parse_capture_source(url)
        return url

    @property
    def source(self) -> CaptureSource:
        return parse_capture_source(self.url)


class CaptureSettings(Strict):
    """``[capture]``: the audio capture gateway (``anbo capture``): inputs → PCM blocks over MQTT."""

    rate: int = Field(default=48_000, ge=8000, le=192_000, description="Sample rate of the blocks (Hz)")
    channels: int = Field(default=2, ge=1, le=32)
    block: float = Field(default=0.1, ge=0.01, le=2.0, description="Seconds of audio per block")
    sample_type: SampleType = Field(default="int16", description="int16 (default) or float32 samples")
    ffmpeg: str = Field(default="ffmpeg", description="The ffmpeg binary (a name on PATH or a path)")
    client_id: str = Field(default="", description="MQTT client id; default anbo-capture-<station>")
    listen: ListenAddress = Field(default="127.0.0.1:9873", description="The gateway's /metrics (host:port)")
    status_interval: float = Field(
        default=5.0, gt=0.0, le=60.0, description="Seconds between input status readings"
    )
    stall_timeout: float = Field(
        default=5.0, gt=0.0, le=300.0, description="No audio from ffmpeg this long: decoder stalled"
    )
    backoff_min: float = Field(default=1.0, gt=0.0, le=60.0)
    backoff_max: float = Field(default=30.0, gt=0.0, le=3600.0)
    queue_blocks: int = Field(
        default=3000,
        ge=10,
        le=1_000_000,
        description="Blocks held for a slow broker (all inputs); oldest dropped",
    )
    inputs: list[CaptureInput] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.backoff_min > self.backoff_max:
            raise ValueError("backoff_min must not exceed backoff_max")
        targets = [i.target for i in self.inputs]
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"more than one input for target {', '.join(dupes)}")
        return self


class Settings(BaseSettings):
    """The whole configuration of one station's anbo."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    station: StationSettings
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    state_directory: Path | None = Field(
        default=None,
        description="Alert state kept across restarts; default $STATE_DIRECTORY (systemd), "
        "else $XDG_STATE_HOME/anbo or ~/.local/state/anbo",
    )
    probes: ProbeSettings = Field(default_factory=lambda: ProbeSettings())
    alerting: AlertingSettings = Field(default_factory=lambda: AlertingSettings())
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    eb: EbSettings = Field(default_factory=lambda: EbSettings())
    ledger: LedgerSettings = Field(default_factory=lambda: LedgerSettings())
    bureau: BureauSettings = Field(default_factory=lambda: BureauSettings())
    migrations: list[MigrationSettings] = Field(default_factory=list)
    targets: list[TargetSettings] = Field(default_factory=list)
    capture: CaptureSettings = Field(default_factory=lambda: CaptureSettings())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment overrides the file (which arrives as init kwargs); no .env files,
        # no secrets directory: secrets are read explicitly from password_file.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _check_targets(self) -> Self:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate target names: {', '.join(dupes)}")
        known = set(names)
        for t in self.targets:
            for served in t.serves:
                if served not in known:
                    raise ValueError(f"target {t.name!r} serves unknown target {served!r}")
        for inp in self.capture.inputs:
            problem = capture_target_problem(self, inp.target)
            if problem is not None:
                raise ValueError(f"capture.inputs[{inp.target}]: {problem}")
        for i, window in enumerate(self.maintenance):
            unknown = [n for n in window.targets if n not in known]
            if unknown:
                raise ValueError(f"maintenance[{i}] names unknown targets: {', '.join(unknown)}")
            if window.station is not None and window.station != self.station.name:
                raise ValueError(
                    f"maintenance[{i}] is for station {window.station!r}, "
                    f"not this one ({self.station.name!r})"
                )
        return self

    def migration_targets(self, m: MigrationSettings) -> tuple[TargetSettings | None, TargetSettings | None]:
        """The configured targets that receive a migration's old and new channel."""

        def find(channel: int | str | None, mhz: float | None) -> TargetSettings | None:
            for t in self.targets:
                if t.kind.value != m.kind:
                    continue
                if channel is not None and t.ds_channel == ds_channel_number(channel):
                    return t
                if mhz is not None and t.frequency_mhz is not None and abs(t.frequency_mhz - mhz) < 0.05:
                    return t
            return None

        return find(m.old_channel, m.old_frequency_mhz), find(m.new_channel, m.new_frequency_mhz)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"anbo-{self.station.name}"

    def target(self, name: str) -> TargetSettings | None:
        for t in self.targets:
            if t.name == name:
                return t
        return None


def capture_target_problem(settings: Settings, name: str) -> str | None:
    """Why ``name`` cannot take a capture input (None if it can): it must be a configured
    fm or dtv target that accepts the ``audio`` stream."""
    target = settings.target(name)
    if target is None:
        known = [t.name for t in settings.targets if t.kind is not TargetKind.TX]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{name!r} is not a configured target{hint}"
    if target.kind is TargetKind.TX:
        return f"{name!r} is a tx target: audio goes to fm and dtv targets"
    if "audio" not in target.accepted_streams:
        return f"target {name!r} does not accept the audio stream (streams = {list(target.accepted_streams)})"
    return None
