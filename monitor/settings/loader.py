"""Loading the settings: the TOML file, ``ANBO_<SECTION>__<KEY>`` overrides, secrets
from files, the cross-checks that need more than one key (migrations, the EB inventory,
the rules against the targets), and errors as one line naming the file and the key.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)
from pydantic_settings.exceptions import SettingsError

from monitor.settings.schema import (
    ENV_NOT_SETTINGS,
    ENV_PREFIX,
    AlertmanagerSettings,
    MetricsSettings,
    MqttSettings,
    Settings,
)
from monitor.wire import is_segment
from probes.channels import ds_channel_number as ds_channel_number
from probes.migration import validate_plans
from rules import Rule
from rules.catalogue import CATALOGUE, Vocabulary, rule_kinds
from rules.expr import param_refs
from rules.templates import placeholders


class ConfigError(Exception):
    """Settings could not be loaded; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _loc_to_key(loc: tuple[int | str, ...], data: Mapping[str, Any] | None = None) -> str:
    """``targets[fm-1].frequency_mhz``: list entries named by their ``name`` when they
    have one (an operator knows the target, not its index), else ``maintenance[0]``."""
    key = ""
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            key += f"[{name}]" if isinstance(name, str) and is_segment(name) else f"[{part}]"
            node = item
        else:
            key += ("." if key else "") + part
            node = node.get(part) if isinstance(node, dict) else None
    return key


def _model_at(loc: tuple[int | str, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The settings model that holds the last key of ``loc`` (``root`` for a top-level key)."""
    model: type[BaseModel] = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        found = _inner_model(info.annotation)
        if found is None:
            return None
        model = found
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _unknown_key_hint(loc: tuple[int | str, ...], root: type[BaseModel] = Settings) -> str:
    """ "unknown key; did you mean keepalive?" or "... is a top-level key"."""
    name = str(loc[-1])
    model = _model_at(loc, root)
    if model is None:
        return "unknown key"
    known = list(model.model_fields)
    if len(loc) > 1 and name in root.model_fields:
        return f"unknown key: {name} is a top-level key (put it above the first [section])"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    if len(loc) == 1:  # a section's key written at the top level
        for section, info in root.model_fields.items():
            inner = _inner_model(info.annotation)
            if inner is not None and name in inner.model_fields:
                return f"unknown key: {name} belongs in [{section}]"
    return f"unknown key (known here: {', '.join(sorted(known))})"


def key_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of ``loc``'s last key in the TOML text, for the usual layouts
    (``key = ...`` under its ``[section]`` or the n-th ``[[section]]``); None if not found."""
    key = re.escape(str(loc[-1]))
    header = ".".join(str(p) for p in loc[:-1] if isinstance(p, str))
    index = next((p for p in loc if isinstance(p, int)), None)
    key_re = re.compile(rf"^\s*[\"']?{key}[\"']?\s*=")
    header_re = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
    seen = -1
    inside = not header
    for number, line in enumerate(text.splitlines(), start=1):
        m = header_re.match(line)
        if m:
            if m.group(1) == header:
                seen += 1
                inside = index is None or seen == index
            else:
                inside = False
            continue
        if inside and key_re.match(line):
            return number
    return None


def _env_name(loc: tuple[int | str, ...], environ: Mapping[str, str]) -> str | None:
    """The environment variable that supplied ``loc``, if any (ANBO_MQTT__URL for mqtt.url)."""
    strs: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break
        strs.append(part)
    upper_env = {k.upper(): k for k in environ}
    for n in range(len(strs), 0, -1):
        name = ENV_PREFIX + "__".join(strs[:n]).upper()
        if name in upper_env:
            return upper_env[name]
    return None


def _unknown_env(environ: Mapping[str, str]) -> list[str]:
    sections = {name.upper() for name in Settings.model_fields}
    problems = []
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper in ENV_NOT_SETTINGS:
            continue
        section = upper[len(ENV_PREFIX) :].split("__", 1)[0]
        if section not in sections:
            problems.append(
                f"environment {key}: unknown setting (known sections: "
                f"{', '.join(sorted(s.lower() for s in sections))})"
            )
    return problems


def read_secret(
    name_or_path: str, *, environ: Mapping[str, str] | None = None, base: Path | None = None
) -> str:
    """Read a secret file: an absolute path, a bare name in ``$CREDENTIALS_DIRECTORY``
    (systemd ``LoadCredential=``), or a path relative to ``base`` (the config's folder).

    Trailing newlines are stripped. Raises OSError naming the file on failure.
    """
    env = os.environ if environ is None else environ
    path = Path(name_or_path)
    if not path.is_absolute():
        creds = env.get("CREDENTIALS_DIRECTORY")
        if creds and (Path(creds) / path).exists():
            path = Path(creds) / path
        elif base is not None:
            path = base / path
    value = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not value:
        raise OSError(f"{path}: secret file is empty")
    return value


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    """Settings plus where they came from and the secrets they point at."""

    settings: Settings
    path: Path
    mqtt_password: str | None
    #: Alertmanager URL → (basic-auth password, bearer token), read from their files.
    alertmanager_secrets: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    #: bcrypt hash of [metrics] basic_auth_user's password, read from basic_auth_hash_file.
    http_auth_hash: str | None = None

    @property
    def state_directory(self) -> Path:
        """Where alert state is kept: the setting, $STATE_DIRECTORY, then the XDG default."""
        if self.settings.state_directory is not None:
            return self.settings.state_directory
        env = os.environ
        if env.get("STATE_DIRECTORY"):
            return Path(env["STATE_DIRECTORY"].split(":")[0])
        base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
        return base / "anbo"

    @property
    def ledger_path(self) -> Path:
        """The outage ledger's SQLite file: ``[ledger] path`` or ``<state directory>/ledger.sqlite3``."""
        if self.settings.ledger.path is not None:
            return self.settings.ledger.path
        return self.state_directory / "ledger.sqlite3"


def describe_validation_error(
    exc: ValidationError,
    *,
    data: Mapping[str, Any],
    text: str,
    where: str,
    root: type[BaseModel] = Settings,
    environ: Mapping[str, str] | None = None,
    value_lines: bool = False,
) -> list[str]:
    """One line per error of a TOML file validated by ``root``: ``file:line: key: why``.

    The line is given for unknown keys (with a suggestion) and, with ``value_lines``, for
    bad values too when it can be found; list entries are named by their ``name``. With ``environ``, a value
    that came from an ``ANBO_...`` variable is named by that variable instead.
    """
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
        key = _loc_to_key(loc, data) or "(top level)"
        env_name = _env_name(loc, environ) if environ is not None else None
        source = f"environment {env_name}" if env_name else where
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and not env_name:
            line = key_line(text, loc)
            source = f"{where}:{line}" if line else where
            msg = _unknown_key_hint(loc, root)
        elif value_lines and not env_name and loc and isinstance(loc[-1], str):
            line = key_line(text, loc)
            source = f"{where}:{line}" if line else where
        problems.append(f"{source}: {key}: {msg}")
    return problems


def load_settings_or_report(path: Path | str) -> LoadedSettings | None:
    """:func:`load_settings` for command lines: every problem printed to stderr, then None."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """A TOML file's text (for line numbers) and its data; :class:`ConfigError` naming the file."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        return text, tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError([f"{where}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from None


def load_settings(path: Path | str) -> LoadedSettings:
    """Load, validate and resolve secrets; raise :class:`ConfigError` listing every problem.

    Environment overrides come from ``os.environ`` (tests use ``monkeypatch.setenv``).
    """
    path = Path(path)
    env = dict(os.environ)
    where = str(path)
    text, data = read_toml(path)

    problems = _unknown_env(env)
    mqtt_section = data.get("mqtt")
    if isinstance(mqtt_section, dict) and "password" in mqtt_section:
        problems.append(
            f"{where}: mqtt.password: secrets are not accepted in the config file; "
            "put the password in a file and name it in mqtt.password_file"
        )
        mqtt_section.pop("password")

    settings: Settings | None = None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems.extend(describe_validation_error(exc, data=data, text=text, where=where, environ=env))
    except SettingsError as exc:
        # An environment value that should be JSON (a list or table) and is not.
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        names = sorted(k for k in env if k.upper().startswith(f"{ENV_PREFIX}{field.upper()}"))
        problems.append(
            f"environment {', '.join(names) or ENV_PREFIX + field.upper()}: {field}: "
            f"not valid JSON ({exc.__cause__ or exc})"
        )

    password: str | None = None
    if settings is not None:
        for key, file in (
            ("mqtt.tls_ca_file", settings.mqtt.tls_ca_file),
            ("mqtt.tls_cert_file", settings.mqtt.tls_cert_file),
            ("mqtt.tls_key_file", settings.mqtt.tls_key_file),
            ("metrics.tls_cert_file", settings.metrics.tls_cert_file),
            ("metrics.tls_key_file", settings.metrics.tls_key_file),
        ):
            if file is not None and not resolve_path(file, path).is_file():
                problems.append(f"{where}: {key}: {file}: no such file")
        if settings.mqtt.password_file is not None:
            try:
                password = read_secret(settings.mqtt.password_file, environ=env, base=path.parent)
            except OSError as exc:
                problems.append(
                    f"{where}: mqtt.password_file: {settings.mqtt.password_file}: "
                    f"cannot read secret: {exc.strerror or exc}"
                )
    secrets: dict[str, tuple[str | None, str | None]] = {}
    auth_hash: str | None = None
    if settings is not None and settings.metrics.basic_auth_hash_file is not None:
        hash_file = settings.metrics.basic_auth_hash_file
        key = f"{where}: metrics.basic_auth_hash_file: {hash_file}"
        try:
            auth_hash = read_secret(hash_file, environ=env, base=path.parent).strip()
        except OSError as exc:
            problems.append(f"{key}: cannot read secret: {exc.strerror or exc}")
        else:
            if not auth_hash.startswith(("$2a$", "$2b$", "$2y$")):
                problems.append(f"{key}: not a bcrypt hash")
    if settings is not None:
        for i, am in enumerate(settings.alerting.alertmanagers):
            key = f"alerting.alertmanagers[{i}]"
            for sub, file in (
                ("tls_ca_file", am.tls_ca_file),
                ("tls_cert_file", am.tls_cert_file),
                ("tls_key_file", am.tls_key_file),
            ):
                if file is not None and not resolve_path(file, path).is_file():
                    problems.append(f"{where}: {key}.{sub}: {file}: no such file")
            found: list[str | None] = []
            for sub, name in (
                ("password_file", am.password_file),
                ("bearer_token_file", am.bearer_token_file),
            ):
                if name is None:
                    found.append(None)
                    continue
                try:
                    found.append(read_secret(name, environ=env, base=path.parent))
                except OSError as exc:
                    found.append(None)
                    problems.append(
                        f"{where}: {key}.{sub}: {name}: cannot read secret: {exc.strerror or exc}"
                    )
            secrets[am.url] = (found[0], found[1])
        problems.extend(_rule_problems(settings, path))
        problems.extend(_migration_problems(settings, where))
        problems.extend(_inventory_problems(settings, path))
    if problems or settings is None:
        raise ConfigError(problems)
    return LoadedSettings(
        settings=_absolute_paths(settings, path),
        path=path,
        mqtt_password=password,
        alertmanager_secrets=secrets,
        http_auth_hash=auth_hash,
    )


def _migration_problems(settings: Settings, where: str) -> list[str]:
    problems = [
        f"{where}: {p}" for p in validate_plans([m.plan() for m in settings.migrations], key="migrations")
    ]
    if problems:
        return problems
    for i, m in enumerate(settings.migrations):
        old, new = settings.migration_targets(m)
        for which, target, channel, mhz in (
            ("old", old, m.old_channel, m.old_frequency_mhz),
            ("new", new, m.new_channel, m.new_frequency_mhz),
        ):
            if target is None:
                what = f"DS-{ds_channel_number(channel)}" if channel is not None else f"{mhz} MHz"
                problems.append(
                    f"{where}: migrations[{i}].{which}_"
                    f"{'channel' if channel is not None else 'frequency_mhz'}: no [[targets]] "
                    f"entry of kind {m.kind} receives {what}; add one so anbo can watch it"
                )
    return problems


def _inventory_problems(settings: Settings, config_path: Path) -> list[str]:
    from monitor.inventory import InventoryError, load_inventory

    if not settings.eb.inventory:
        return []
    try:
        load_inventory(resolve_path(p, config_path) for p in settings.eb.inventory)
    except InventoryError as exc:
        return [str(p) for p in exc.problems]
    return []


def rule_vocabulary(settings: Settings) -> Vocabulary:
    """The measurement catalogue plus what this station's config adds: names its targets
    declare (``extra_readings``, the ages of their own streams), params and labels they set."""
    measurements: dict[str, set[str]] = {}
    params: dict[str, set[str]] = {}
    labels: set[str] = set()
    for t in settings.targets:
        kind = t.kind.value
        measurements.setdefault(kind, set()).update(
            {*t.extra_readings, *(f"{s}_age_seconds" for s in t.accepted_streams)}
        )
        params.setdefault(kind, set()).update(t.params)
        labels.update(t.labels)
    for m in settings.migrations:
        params.setdefault("migration", set()).update(m.params)
    for kind in ("eb_region", "eb_dispatch"):
        params.setdefault(kind, set()).update(settings.eb.params)
    return Vocabulary(
        extra_measurements={k: frozenset(v) for k, v in measurements.items()},
        extra_params={k: frozenset(v) for k, v in params.items()},
        extra_labels=frozenset(labels),
    )


def _rule_problems(settings: Settings, config_path: Path) -> list[str]:
    """Load the rule files the settings name, so ``anbo check`` reports their errors too."""
    from rules import RuleFileError, load_rules  # rules import nothing of monitor

    paths = [resolve_path(p, config_path) for p in settings.alerting.rule_paths]
    missing = [
        f"{config_path}: alerting.rule_paths: {p}: no such file or folder" for p in paths if not p.exists()
    ]
    if missing:
        return missing
    try:
        ruleset = load_rules(
            paths, builtin=settings.alerting.builtin_rules, vocabulary=rule_vocabulary(settings)
        )
    except RuleFileError as exc:
        return [str(e) for e in exc.errors]
    return _unused_params(settings, config_path, ruleset.rules)


def _unused_params(settings: Settings, config_path: Path, rules: Sequence[Rule]) -> list[str]:
    """A target param that neither the catalogue knows for its kind nor any rule reads is
    a typo (``rf_refrence_dbuv``) that would leave a rule unknown forever: refuse it."""
    read: dict[str, set[str]] = {}
    for rule in rules:
        names: set[str] = set()
        for node in (rule.expr, rule.clear):
            if node is not None:
                names.update(name for name, _ in param_refs(node))
        for text in rule.annotations.values():
            names.update(name for ns, name in placeholders(text) if ns in (None, "params"))
        for kind in rule_kinds(rule.selector, rule.selector_regex)[0]:
            read.setdefault(kind, set()).update(names)
    problems = []
    for i, t in enumerate(settings.targets):
        known = {p.name for p in CATALOGUE.params if t.kind.value in p.kinds}
        for key in t.params:
            if key not in known and key not in read.get(t.kind.value, ()):
                close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"{config_path}: targets[{i}] ({t.name}).params.{key}: no rule reads this param "
                    f"and the catalogue does not know it for kind {t.kind.value}{hint}"
                )
    return problems


def _absolute_paths(settings: Settings, config_path: Path) -> Settings:
    """Resolve relative paths (TLS files, rule paths, state folder) against the config
    file's folder, once, here."""

    def fix(model: MqttSettings | MetricsSettings) -> dict[str, Path]:
        return {
            name: resolve_path(value, config_path)
            for name in ("tls_ca_file", "tls_cert_file", "tls_key_file")
            if isinstance(value := getattr(model, name, None), Path)
        }

    def fix_am(am: AlertmanagerSettings) -> AlertmanagerSettings:
        return am.model_copy(
            update={
                name: resolve_path(value, config_path)
                for name in ("tls_ca_file", "tls_cert_file", "tls_key_file")
                if isinstance(value := getattr(am, name), Path)
            }
        )

    eb = settings.eb.model_copy(
        update={"inventory": [resolve_path(p, config_path) for p in settings.eb.inventory]}
    )
    alerting = settings.alerting.model_copy(
        update={
            "alertmanagers": [fix_am(am) for am in settings.alerting.alertmanagers],
            "rule_paths": [resolve_path(p, config_path) for p in settings.alerting.rule_paths],
        }
    )
    update: dict[str, object] = {
        "mqtt": settings.mqtt.model_copy(update=fix(settings.mqtt)),
        "metrics": settings.metrics.model_copy(update=fix(settings.metrics)),
        "alerting": alerting,
        "eb": eb,
    }
    inputs = []
    for inp in settings.capture.inputs:
        src = inp.source
        if src.is_file and not Path(src.location).is_absolute():
            inp = inp.model_copy(update={"url": f"file:{resolve_path(Path(src.location), config_path)}"})
        inputs.append(inp)
    update["capture"] = settings.capture.model_copy(update={"inputs": inputs})
    if settings.state_directory is not None:
        update["state_directory"] = resolve_path(settings.state_directory, config_path)
    if settings.ledger.path is not None:
        update["ledger"] = settings.ledger.model_copy(
            update={"path": resolve_path(settings.ledger.path, config_path)}
        )
    return settings.model_copy(update=update)


def resolve_path(file: Path, config_path: Path) -> Path:
    """Paths in the config file are relative to the file's own folder."""
    return file if file.is_absolute() else config_path.parent / file
