"""``anbo bureau``'s settings: a TOML file, or only ``--mqtt-url`` and ``--database``.

::

    [mqtt]                       # the bureau's broker: the keys of a station's [mqtt]
    url = "mqtts://bureau-mq.example:8883"
    client_id = "anbo-bureau"
    tls_ca_file = "/etc/anbo/bureau-ca.pem"
    tls_cert_file = "/etc/anbo/bureau-service.pem"
    tls_key_file = "/etc/anbo/bureau-service.key"

    [database]
    url = "postgresql://anbo@/anbo_bureau"   # libpq URL; no password in it
    password_file = "bureau-db-password"     # optional; a systemd credential name or a path

    [http]
    listen = "127.0.0.1:9874"                # /metrics, /-/healthy, /-/ready

    heartbeat_timeout = 60                   # StationUnreachable after this long without a heartbeat

    [[stations]]                             # the stations to expect (optional)
    name = "qingshan"
    county = "Qingshan"
    station_class = 3
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.settings import MqttSettings, check_station_name, parse_listen, read_secret

__all__ = ["BureauConfig", "BureauConfigError", "ExpectedStation", "load_bureau_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    url: str = Field(description="libpq connection URL, e.g. postgresql://anbo@db.example/anbo_bureau")
    password_file: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{url!r}: expected a postgresql:// URL")
        if "@" in url.split("//", 1)[1].split("/", 1)[0] and ":" in url.split("//", 1)[1].split("@", 1)[0]:
            raise ValueError("a password does not belong in the URL; use password_file")
        return url


class HttpSettings(_Strict):
    listen: str = "127.0.0.1:9874"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value


class LoggingSettings(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ExpectedStation(_Strict):
    name: str
    county: str = ""
    station_class: Literal[1, 2, 3] = 3

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_station_name(name)


class BureauConfig(_Strict):
    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings(client_id="anbo-bureau"))
    database: DatabaseSettings
    http: HttpSettings = Field(default_factory=HttpSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    heartbeat_timeout: float = Field(default=60.0, gt=0, le=86400)
    #: how many events go into one PostgreSQL transaction at most
    batch: int = Field(default=500, ge=1, le=100_000)
    stations: list[ExpectedStation] = Field(default_factory=list)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or "anbo-bureau"


class BureauConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_bureau_config(path: Path) -> tuple[BureauConfig, str | None, str | None]:
    """(config, MQTT password, database password); :class:`BureauConfigError` lists every problem."""
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BureauConfigError([f"{where}: no such file"]) from None
    except OSError as exc:
        raise BureauConfigError([f"{where}: cannot read: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BureauConfigError([f"{where}: not valid TOML: {exc}"]) from None
    try:
        config = BureauConfig.model_validate(data)
    except ValidationError as exc:
        raise BureauConfigError(
            [f"{where}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
        ) from None
    tls = {
        k: path.parent / v
        for k in ("tls_ca_file", "tls_cert_file", "tls_key_file")
        if (v := getattr(config.mqtt, k)) is not None and not v.is_absolute()
    }
    if tls:  # relative to the config file, as in a station's config
        config = config.model_copy(update={"mqtt": config.mqtt.model_copy(update=tls)})
    names = [s.name for s in config.stations]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BureauConfigError([f"{where}: stations: listed twice: {', '.join(dupes)}"])
    try:
        mqtt_pw = (
            read_secret(config.mqtt.password_file, base=path.parent) if config.mqtt.password_file else None
        )
        db_pw = (
            read_secret(config.database.password_file, base=path.parent)
            if config.database.password_file
            else None
        )
    except OSError as exc:
        raise BureauConfigError([f"{where}: {exc}"]) from None
    return config, mqtt_pw, db_pw
