"""Station settings: a TOML file given by ``--config``, overridden by ``ANBO_<SECTION>__<KEY>``.

Loading is done once, in main (and again on SIGHUP), and the result is passed down;
nothing in anbo reads settings at import time.

Precedence, highest first: environment variables (``ANBO_MQTT__URL``,
``ANBO_METRICS__LISTEN``, ``ANBO_TARGETS`` as JSON, ...), then the TOML file, then the
defaults below. Unknown keys are errors wherever they come from. Secrets are never
taken from the TOML file or the environment: only from files (``password_file``), which
may be a bare credential name resolved in systemd's ``$CREDENTIALS_DIRECTORY``.

Every problem is reported as one line naming the file (or the environment variable)
and the dotted key, e.g. ``/etc/anbo/anbo.toml: targets[2].frequency_mhz: ...``.

The package: :mod:`monitor.settings.schema` (the models) and
:mod:`monitor.settings.loader` (files, environment, secrets, cross-checks). Import from
``monitor.settings``: everything public is here.
"""

from __future__ import annotations

from monitor.settings.loader import (
    ConfigError as ConfigError,
)
from monitor.settings.loader import (
    LoadedSettings as LoadedSettings,
)
from monitor.settings.loader import (
    describe_validation_error as describe_validation_error,
)
from monitor.settings.loader import (
    key_line as key_line,
)
from monitor.settings.loader import (
    load_settings as load_settings,
)
from monitor.settings.loader import (
    load_settings_or_report as load_settings_or_report,
)
from monitor.settings.loader import (
    read_secret as read_secret,
)
from monitor.settings.loader import (
    read_toml as read_toml,
)
from monitor.settings.loader import (
    resolve_path as resolve_path,
)
from monitor.settings.loader import (
    rule_vocabulary as rule_vocabulary,
)
from monitor.settings.schema import (
    CAPTURE_SCHEMES as CAPTURE_SCHEMES,
)
from monitor.settings.schema import (
    DEFAULT_STREAMS as DEFAULT_STREAMS,
)
from monitor.settings.schema import (
    DS_MAX as DS_MAX,
)
from monitor.settings.schema import (
    DS_MIN as DS_MIN,
)
from monitor.settings.schema import (
    ENV_NOT_SETTINGS as ENV_NOT_SETTINGS,
)
from monitor.settings.schema import (
    ENV_PREFIX as ENV_PREFIX,
)
from monitor.settings.schema import (
    FM_MAX_MHZ as FM_MAX_MHZ,
)
from monitor.settings.schema import (
    FM_MIN_MHZ as FM_MIN_MHZ,
)
from monitor.settings.schema import (
    LABEL_NAME_RE as LABEL_NAME_RE,
)
from monitor.settings.schema import (
    RESERVED_LABELS as RESERVED_LABELS,
)
from monitor.settings.schema import (
    AlertingSettings as AlertingSettings,
)
from monitor.settings.schema import (
    AlertmanagerSettings as AlertmanagerSettings,
)
from monitor.settings.schema import (
    BrokerAddress as BrokerAddress,
)
from monitor.settings.schema import (
    BureauSettings as BureauSettings,
)
from monitor.settings.schema import (
    CaptureInput as CaptureInput,
)
from monitor.settings.schema import (
    CaptureSettings as CaptureSettings,
)
from monitor.settings.schema import (
    CaptureSource as CaptureSource,
)
from monitor.settings.schema import (
    EbSettings as EbSettings,
)
from monitor.settings.schema import (
    LedgerSettings as LedgerSettings,
)
from monitor.settings.schema import (
    ListenAddress as ListenAddress,
)
from monitor.settings.schema import (
    LoggingSettings as LoggingSettings,
)
from monitor.settings.schema import (
    MetricsSettings as MetricsSettings,
)
from monitor.settings.schema import (
    MigrationSettings as MigrationSettings,
)
from monitor.settings.schema import (
    MqttSettings as MqttSettings,
)
from monitor.settings.schema import (
    ProbeSettings as ProbeSettings,
)
from monitor.settings.schema import (
    SampleType as SampleType,
)
from monitor.settings.schema import (
    Settings as Settings,
)
from monitor.settings.schema import (
    StationSettings as StationSettings,
)
from monitor.settings.schema import (
    Strict as Strict,
)
from monitor.settings.schema import (
    TargetKind as TargetKind,
)
from monitor.settings.schema import (
    TargetSettings as TargetSettings,
)
from monitor.settings.schema import (
    capture_target_problem as capture_target_problem,
)
from monitor.settings.schema import (
    check_station_name as check_station_name,
)
from monitor.settings.schema import (
    ds_channel_centre_mhz as ds_channel_centre_mhz,
)
from monitor.settings.schema import (
    ds_channel_lower_edge_mhz as ds_channel_lower_edge_mhz,
)
from monitor.settings.schema import (
    ds_channel_number as ds_channel_number,
)
from monitor.settings.schema import (
    parse_broker_url as parse_broker_url,
)
from monitor.settings.schema import (
    parse_capture_source as parse_capture_source,
)
from monitor.settings.schema import (
    parse_listen as parse_listen,
)
