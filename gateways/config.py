"""The transmitter gateway's configuration (``anbo poll --config gateway.toml``).

A TOML file of its own, since the gateway may run on another box than the daemon (it
needs only the broker)::

    [station]
    name = "qingshan"               # topic level: anbo/<station>/<target>/status

    [mqtt]                          # the same keys as the daemon's [mqtt]
    url = "mqtt://127.0.0.1:1883"

    [metrics]
    listen = "127.0.0.1:9874"       # the gateway's own /metrics, /-/healthy, /-/ready

    [[snmp]]
    target = "tx-fm-a"              # a tx target of the station (its status stream)
    host = "192.0.2.10"
    version = "2c"
    community_file = "tx-fm-a-community"   # a file, or a systemd credential name
    map = "devices/example-fm-snmp.toml"
    interval = "5s"

    [[modbus]]
    target = "tx-dtv-b"
    host = "192.0.2.20"
    unit = 1
    map = "devices/example-dtv-modbus.toml"

Secrets (communities, SNMPv3 keys, the MQTT password) are never in the file: each
``*_file`` key names a file, absolute, relative to the config file, or a bare systemd
credential name looked up in ``$CREDENTIALS_DIRECTORY``. Map paths are relative to the
config file. Problems are one line each, ``file:line: key: why``, like the daemon's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateways.mapping import DeviceMap, load_map
from monitor.settings import (
    ConfigError,
    LoggingSettings,
    MqttSettings,
    Settings,
    StationSettings,
    describe_validation_error,
    key_line,
    parse_listen,
    read_secret,
    read_toml,
    resolve_path,
)
from monitor.wire import is_segment
from rules.durations import parse_duration

__all__ = [
    "GatewayConfig",
    "LoadedGateway",
    "ModbusSource",
    "SnmpSource",
    "load_gateway",
    "station_problems",
]


def _duration(value: object) -> object:
    """``5``, ``"5s"``, ``"1m30s"`` → seconds (like every other duration of anbo)."""
    if isinstance(value, str):
        return parse_duration(value)
    return value


Seconds = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayMetrics(_Strict):
    """``[metrics]``: the gateway's own HTTP endpoint (``/metrics``, ``/-/healthy``, ``/-/ready``)."""

    listen: str = "127.0.0.1:9874"

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class _Source(_Strict):
    #: the source's name in metrics and logs; default: the target's name
    name: str = ""
    target: str
    host: str = Field(min_length=1)
    map: Path
    interval: Seconds = Field(default=5.0, ge=0.1, le=3600.0)
    timeout: Seconds = Field(default=2.0, gt=0.0, le=60.0)
    #: longest pause between attempts while the device does not answer (jittered backoff)
    backoff_max: Seconds = Field(default=60.0, gt=0.0, le=3600.0)

    @field_validator("target", "name")
    @classmethod
    def _check_segment(cls, value: str, info: ValidationInfo) -> str:
        if (value or info.field_name == "target") and not is_segment(value):
            raise ValueError(f"{value!r}: a {info.field_name} must match [A-Za-z0-9_.-]{{1,64}}")
        return value

    @property
    def source(self) -> str:
        return self.name or self.target


AuthProtocol = Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"]
PrivProtocol = Literal["des", "3des", "aes128", "aes192", "aes256"]


class SnmpSource(_Source):
    """``[[snmp]]``: one SNMP agent (v2c, or v3 with authNoPriv / authPriv)."""

    port: int = Field(default=161, ge=1, le=65535)
    version: Literal["2c", "3"] = "2c"
    retries: int = Field(default=1, ge=0, le=5)
    community_file: str | None = None
    user: str | None = None
    auth_protocol: AuthProtocol = "sha"
    auth_key_file: str | None = None
    priv_protocol: PrivProtocol = "aes128"
    priv_key_file: str | None = None
    context: str = ""

    @model_validator(mode="after")
    def _check_security(self) -> Self:
        if self.version == "2c":
            if self.community_file is None:
                raise ValueError("SNMP v2c needs community_file (a file holding the community)")
            v3 = [k for k in ("user", "auth_key_file", "priv_key_file") if getattr(self, k) is not None]
            if v3:
                raise ValueError(f'{", ".join(v3)}: only for version = "3"')
        else:
            if self.community_file is not None:
                raise ValueError('community_file: only for version = "2c"')
            if self.user is None or self.auth_key_file is None:
                raise ValueError("SNMP v3 needs user and auth_key_file (and priv_key_file for authPriv)")
        return self


class ModbusSource(_Source):
    """``[[modbus]]``: one Modbus TCP server (a controller, or a gateway to a serial bus)."""

    port: int = Field(default=502, ge=1, le=65535)
    #: the Modbus unit (device, slave) id
    unit: int = Field(default=1, ge=0, le=255)
    #: most registers asked for in one request (the protocol allows 125)
    max_registers: int = Field(default=100, ge=1, le=125)
    #: unused registers between two points that still go in one request
    max_gap: int = Field(default=8, ge=0, le=100)


class GatewayConfig(_Strict):
    """The whole gateway file."""

    station: StationSettings
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    metrics: GatewayMetrics = Field(default_factory=GatewayMetrics)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    snmp: list[SnmpSource] = Field(default_factory=list)
    modbus: list[ModbusSource] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_unique(self) -> Self:
        sources = [*self.snmp, *self.modbus]
        if not sources:
            raise ValueError("no [[snmp]] or [[modbus]] source: nothing to poll")
        for what, names in (
            ("source names", [s.source for s in sources]),
            # one sequence per (target, stream): two publishers would make each other's gaps
            ("targets (one source per target)", [s.target for s in sources]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
        return self

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"anbo-poll-{self.station.name}"


@dataclass(frozen=True, slots=True)
class Secrets:
    community: str | None = None
    auth_key: str | None = None
    priv_key: str | None = None


@dataclass(frozen=True, slots=True)
class LoadedGateway:
    config: GatewayConfig
    path: Path
    mqtt_password: str | None
    #: per source name: its device map and secrets
    maps: dict[str, DeviceMap] = field(default_factory=dict)
    secrets: dict[str, Secrets] = field(default_factory=dict)


def load_gateway(path: Path | str) -> LoadedGateway:
    """Load and check a gateway file, its maps and secrets; :class:`ConfigError` lists every problem."""
    path = Path(path)
    where = str(path)
    text, data = read_toml(path)
    problems: list[str] = []
    for section, keys in (("mqtt", ("password",)), ("snmp", ("community", "auth_key", "priv_key"))):
        entries = data.get(section)
        for i, entry in enumerate(entries if isinstance(entries, list) else [entries]):
            for key in keys:
                if isinstance(entry, dict) and key in entry:
                    name = f"{section}[{i}]" if isinstance(entries, list) else section
                    line = key_line(text, (section, i, key) if isinstance(entries, list) else (section, key))
                    problems.append(
                        f"{where}{f':{line}' if line else ''}: {name}.{key}: secrets are not accepted in "
                        f"the config file; put it in a file and name it in {key}_file"
                    )
                    entry.pop(key)
    try:
        config = GatewayConfig(**data)
    except ValidationError as exc:
        problems += describe_validation_error(
            exc, data=data, text=text, where=where, root=GatewayConfig, value_lines=True
        )
        raise ConfigError(problems) from None
    except TypeError as exc:
        raise ConfigError([*problems, f"{where}: {exc}"]) from None

    def at(section: str, index: int, key: str) -> str:
        line = key_line(text, (section, index, key))
        return f"{where}:{line}" if line else where

    def secret(name: str | None, section: str, index: int, key: str) -> str | None:
        if name is None:
            return None
        try:
            return read_secret(name, base=path.parent)
        except OSError as exc:
            problems.append(
                f"{at(section, index, key)}: {section}[{index}].{key}: {name}: {exc.strerror or exc}"
            )
            return None

    password: str | None = None
    if config.mqtt.password_file is not None:
        try:
            password = read_secret(config.mqtt.password_file, base=path.parent)
        except OSError as exc:
            problems.append(
                f"{where}: mqtt.password_file: {config.mqtt.password_file}: {exc.strerror or exc}"
            )
    for key, file in (
        ("mqtt.tls_ca_file", config.mqtt.tls_ca_file),
        ("mqtt.tls_cert_file", config.mqtt.tls_cert_file),
        ("mqtt.tls_key_file", config.mqtt.tls_key_file),
    ):
        if file is not None and not resolve_path(file, path).is_file():
            problems.append(f"{where}: {key}: {file}: no such file")
    maps: dict[str, DeviceMap] = {}
    secrets: dict[str, Secrets] = {}
    for section, sources in (("snmp", config.snmp), ("modbus", config.modbus)):
        for i, src in enumerate(sources):
            try:
                maps[src.source] = load_map(resolve_path(src.map, path), section)  # type: ignore[arg-type]
            except ConfigError as exc:
                problems += [f"{at(section, i, 'map')}: {section}[{i}].map: {p}" for p in exc.problems]
            if isinstance(src, SnmpSource):
                found = Secrets(
                    community=secret(src.community_file, section, i, "community_file"),
                    auth_key=secret(src.auth_key_file, section, i, "auth_key_file"),
                    priv_key=secret(src.priv_key_file, section, i, "priv_key_file"),
                )
                for key, value in (("auth_key_file", found.auth_key), ("priv_key_file", found.priv_key)):
                    if value is not None and len(value) < 8:
                        problems.append(
                            f"{at(section, i, key)}: {section}[{i}].{key}: "
                            "an SNMPv3 key has at least 8 characters"
                        )
                secrets[src.source] = found
    if problems:
        raise ConfigError(problems)
    mqtt = config.mqtt.model_copy(
        update={
            k: resolve_path(v, path) if v is not None else None
            for k, v in (
                ("tls_ca_file", config.mqtt.tls_ca_file),
                ("tls_cert_file", config.mqtt.tls_cert_file),
                ("tls_key_file", config.mqtt.tls_key_file),
            )
        }
    )
    return LoadedGateway(
        config=config.model_copy(update={"mqtt": mqtt}),
        path=path,
        mqtt_password=password,
        maps=maps,
        secrets=secrets,
    )


def station_problems(gateway: LoadedGateway, station: Settings, station_path: Path) -> list[str]:
    """What the station's config says against the gateway's: same station, broker
    prefix, and every source's target a configured tx target that accepts ``status``."""
    where = str(gateway.path)
    g = gateway.config
    out = []
    if g.station.name != station.station.name:
        out.append(
            f"{where}: station.name: {g.station.name!r}, "
            f"but {station_path} is station {station.station.name!r}"
        )
    if g.mqtt.topic_prefix != station.mqtt.topic_prefix:
        out.append(
            f"{where}: mqtt.topic_prefix: {g.mqtt.topic_prefix!r}, but the daemon subscribes under "
            f"{station.mqtt.topic_prefix!r}"
        )
    for section, sources in (("snmp", g.snmp), ("modbus", g.modbus)):
        for i, src in enumerate(sources):
            t = station.target(src.target)
            if t is None:
                problem = f"no [[targets]] entry {src.target!r} in {station_path}"
            elif t.kind.value != "tx":
                problem = f"target {src.target!r} is of kind {t.kind.value}, not tx"
            elif "status" not in t.accepted_streams:
                problem = f"target {src.target!r} does not accept the status stream"
            else:
                dmap = gateway.maps[src.source]
                missing = [p.reading for p in dmap.points if p.extra and p.reading not in t.extra_readings]
                if missing:
                    out.append(
                        f"{dmap.path}: extra readings {', '.join(missing)} are not in the extra_readings "
                        f"of target {src.target!r} in {station_path}: the daemon would drop them"
                    )
                continue
            out.append(f"{where}: {section}[{i}].target: {problem}")
    return out
