"""Alert delivery to Alertmanager (API v2, ``POST /api/v2/alerts``), the way Prometheus does it.

The daemon calls :meth:`AlertmanagerNotifier.update` on every evaluation tick with the
alerts that are firing and those that resolved this tick; :meth:`~AlertmanagerNotifier.run`
is a background task that delivers them; :meth:`~AlertmanagerNotifier.flush` tries to
deliver what is pending at shutdown, within a time limit.

Semantics (those of Prometheus' notifier, plus retries):

- Every configured Alertmanager gets every alert (an HA pair is given both addresses,
  never a load balancer: the pair deduplicates by gossip). Each has its own queue,
  HTTP session and delivery task, so one that is down or slow never delays another.
- A new firing alert is queued at once; while it keeps firing it is queued again every
  ``resend_interval`` with the same ``startsAt`` and ``endsAt = now + 4 × max(resend,
  evaluation interval)``, so that Alertmanager resolves it by itself if anbo dies.
  ``endsAt`` is computed when the POST is built, so a retried alert never carries a
  stale one.
- A resolved alert is queued at once with ``endsAt`` = its resolution time, then again
  every ``resend_interval`` for ``resolved_retention`` (15 min): a resolution is not
  lost while an Alertmanager is down or restarting. An alert that vanishes from the
  firing set without a resolution (its target was removed on reload, a maintenance
  window muted it) is resolved at that moment.
- Resends are driven by :meth:`update` only: if evaluation stops, nothing keeps
  alerts alive and Alertmanager resolves them when ``endsAt`` passes.
- A queue holds at most one entry per alert (its newest version) and at most
  ``queue_size`` alerts; when full, the oldest entry is dropped, counted and logged.
- Queued alerts are batched into one POST of at most :data:`MAX_BATCH_BYTES` of JSON.
  An entry leaves the queue only once Alertmanager answered 2xx, or 4xx: a 4xx is
  counted, its body logged (rate-limited) and not retried (the next resend goes
  again). 5xx, timeouts, connection and TLS errors keep the entries and retry with
  jittered exponential backoff capped at ``resend_interval``.
- Alerts Alertmanager would reject as a whole batch (invalid label or annotation
  names, no labels, non-string values, non-finite times) are refused by ``update``,
  counted in :attr:`~AlertmanagerNotifier.invalid` and logged, instead of poisoning a
  batch.

Counters live in plain attributes (:attr:`~AlertmanagerNotifier.stats`, one
:class:`AlertmanagerStats` per Alertmanager) and :meth:`~AlertmanagerNotifier.collect`
turns them into Prometheus metric families for the daemon's collector.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import random
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitor import __version__

__all__ = [
    "API_PATH",
    "MAX_BATCH_BYTES",
    "AlertmanagerNotifier",
    "AlertmanagerStats",
    "AlertmanagerTarget",
    "Delivery",
    "DeliveryState",
    "FailureReason",
    "OutgoingAlert",
    "alert_payload",
    "client_ssl_context",
    "open_session",
    "rfc3339",
]

log = structlog.get_logger(__name__)

#: Alertmanager's API v2 endpoint, appended to each target's base URL.
API_PATH = "/api/v2/alerts"
#: Largest JSON body of one POST (a single larger alert still goes, alone).
MAX_BATCH_BYTES = 64 * 1024
#: ``endsAt`` of a firing alert is ``now + ENDS_AT_FACTOR × max(resend, evaluation interval)``.
ENDS_AT_FACTOR = 4
#: At most this much of a rejected request's response body is read and logged.
MAX_ERROR_BODY = 1024
#: During :meth:`AlertmanagerNotifier.flush`, retries wait at most this long.
FLUSH_RETRY_DELAY = 0.25

_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Alertmanager (Go time.Time) and Python datetimes both cover years 1..9999.
_MIN_TS = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_MAX_TS = datetime(9999, 12, 30, tzinfo=UTC).timestamp()

_Key = tuple[tuple[str, str], ...]


class FailureReason(StrEnum):
    """Why a POST to an Alertmanager failed (a closed set: the ``reason`` label)."""

    HTTP_4XX = "http_4xx"  # not retried (also other non-2xx, non-5xx answers such as redirects)
    HTTP_5XX = "http_5xx"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TLS = "tls"  # handshake or certificate failure, or unreadable CA/cert/key files

    @property
    def retryable(self) -> bool:
        return self is not FailureReason.HTTP_4XX


@dataclass(frozen=True, slots=True)
class OutgoingAlert:
    """One alert as Alertmanager sees it. Its identity is its label set."""

    #: Includes ``alertname``, ``severity``, ``station``, ``target``… Empty values are
    #: dropped (as Prometheus does: an empty label is an absent label).
    labels: Mapping[str, str]
    #: ``summary``, ``description``, ``runbook_url``…
    annotations: Mapping[str, str]
    #: Wall clock, Unix seconds; the same on every resend of one incident.
    starts_at: float
    #: None while firing (the notifier computes ``endsAt``); the resolution time once resolved.
    ends_at: float | None = None
    generator_url: str = ""


@dataclass(frozen=True, slots=True)
class AlertmanagerTarget:
    """One Alertmanager, by base URL (``http://am1:9093``, or with a path prefix)."""

    url: str
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    basic_auth_user: str | None = None
    #: Already read from its file by the caller.
    basic_auth_password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    #: Total time limit of one POST, seconds.
    timeout: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Alertmanager URL must be http:// or https:// with a host, got {self.url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"Alertmanager URL {self.name!r}: give credentials as basic auth, not in it")
        if parts.query or parts.fragment:
            raise ValueError(f"Alertmanager URL {self.url!r} must not have a query or fragment")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(f"Alertmanager {self.name}: tls_cert_file and tls_key_file go together")
        if parts.scheme == "http" and (self.tls_ca_file or self.tls_cert_file):
            raise ValueError(f"Alertmanager {self.name}: TLS files given for a plain http:// URL")
        if self.bearer_token is not None and self.basic_auth_user is not None:
            raise ValueError(f"Alertmanager {self.name}: basic auth and bearer token are exclusive")
        if self.basic_auth_user is not None and ":" in self.basic_auth_user:
            raise ValueError(f"Alertmanager {self.name}: a basic auth user cannot contain ':'")
        if self.basic_auth_password is not None and self.basic_auth_user is None:
            raise ValueError(f"Alertmanager {self.name}: basic auth password without a user")
        if not self.timeout > 0:
            raise ValueError(f"Alertmanager {self.name}: timeout must be > 0, got {self.timeout}")

    @property
    def name(self) -> str:
        """The base URL without credentials or trailing slash: the ``alertmanager`` label value."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"

    @property
    def api_url(self) -> str:
        return self.name + API_PATH

    @property
    def tls(self) -> bool:
        return self.url.startswith("https:")


@dataclass(slots=True)
class AlertmanagerStats:
    """Counters of one Alertmanager, read by the Prometheus collector."""

    alertmanager: str
    #: Alerts accepted (2xx).
    sent: int = 0
    #: Successful POSTs.
    posts: int = 0
    #: Alerts in failed POSTs by :class:`FailureReason` value (each attempt counts again).
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FailureReason, 0))
    #: Failed POSTs by :class:`FailureReason` value.
    failed_posts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FailureReason, 0))
    #: Alerts dropped from a full queue.
    dropped: int = 0
    #: Alerts waiting to be delivered.
    queue_depth: int = 0
    #: Wall-clock time of the last 2xx answer, Unix seconds.
    last_success: float | None = None
    #: Failed attempts since the last answer (2xx or 4xx); drives the backoff.
    consecutive_failures: int = 0


def rfc3339(ts: float) -> str:
    """Unix seconds as RFC 3339 in UTC with millisecond precision and ``Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_payload(alert: OutgoingAlert, *, now: float, valid_for: float) -> dict[str, object]:
    """The API v2 ``postableAlert`` object of ``alert`` built at wall-clock time ``now``.

    A firing alert (``ends_at`` None) gets ``endsAt = now + valid_for``; ``endsAt`` is
    never before ``startsAt`` (Alertmanager rejects that).
    """
    ends = now + valid_for if alert.ends_at is None else alert.ends_at
    payload: dict[str, object] = {
        "labels": {k: v for k, v in alert.labels.items() if v},
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(max(ends, alert.starts_at)),
    }
    if alert.generator_url.startswith(("http://", "https://")):
        payload["generatorURL"] = alert.generator_url
    return payload


def client_ssl_context(target: AlertmanagerTarget) -> ssl.SSLContext | None:
    """The TLS context for an https:// target (reads files: call off the event loop)."""
    if not target.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(target.tls_ca_file) if target.tls_ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if target.tls_cert_file is not None and target.tls_key_file is not None:
        ctx.load_cert_chain(str(target.tls_cert_file), str(target.tls_key_file))
    return ctx


SessionFactory = Callable[[AlertmanagerTarget], Awaitable[aiohttp.ClientSession]]


async def open_session(target: AlertmanagerTarget) -> aiohttp.ClientSession:
    """An HTTP session for one Alertmanager: its TLS, auth and timeout; no proxies from the environment."""
    ctx = await asyncio.to_thread(client_ssl_context, target) if target.tls else None
    headers = {"User-Agent": f"anbo/{__version__}"}
    if target.bearer_token is not None:
        headers["Authorization"] = f"Bearer {target.bearer_token}"
    elif target.basic_auth_user is not None:  # RFC 7617, UTF-8
        pair = f"{target.basic_auth_user}:{target.basic_auth_password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx if ctx is not None else True, limit=4),
        timeout=aiohttp.ClientTimeout(total=target.timeout),
        headers=headers,
        trust_env=False,
    )


@dataclass(slots=True)
class _Tracked:
    alert: OutgoingAlert
    queued_at: float  # monotonic time it was last queued
    resolved_at: float | None  # monotonic time of resolution, None while firing
    #: per Alertmanager, the outcome of the last attempt to deliver this version of the
    #: alert: "delivered", or the failure ("connection: Cannot connect to host ...")
    outcome: dict[str, str] = field(default_factory=dict)


class DeliveryState(StrEnum):
    """Where one alert stands with the Alertmanagers (the console and the demo show it)."""

    PENDING = "pending"  # not yet attempted (or queued behind others)
    DELIVERED = "delivered"  # accepted (2xx) by at least one Alertmanager
    FAILING = "failing"  # every attempt so far failed: the reason says why
    NOT_SENT = "not_sent"  # not handed to the notifier (suppressed, or unknown to it)


@dataclass(frozen=True, slots=True)
class Delivery:
    state: DeliveryState
    reason: str | None = None
    #: per Alertmanager: (state, reason)
    alertmanagers: Mapping[str, tuple[DeliveryState, str | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "alertmanagers": {
                name: {"state": st.value, "reason": why} for name, (st, why) in self.alertmanagers.items()
            },
        }


@dataclass(slots=True)
class _Destination:
    target: AlertmanagerTarget
    stats: AlertmanagerStats
    queue: OrderedDict[_Key, OutgoingAlert] = field(default_factory=OrderedDict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    session: aiohttp.ClientSession | None = None
    #: the last failure ("timeout", "connection: ..."), None after a success
    last_failure: str | None = None

    @property
    def name(self) -> str:
        return self.stats.alertmanager


class AlertmanagerNotifier:
    """Sends anbo's alerts to every configured Alertmanager; see the module docstring."""

    def __init__(
        self,
        targets: Sequence[AlertmanagerTarget],
        *,
        resend_interval: float = 60.0,
        evaluation_interval: float = 1.0,
        resolved_retention: float = 900.0,
        queue_size: int = 10_000,
        backoff_initial: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        session_factory: SessionFactory = open_session,
    ) -> None:
        if not resend_interval > 0 or not evaluation_interval > 0:
            raise ValueError("resend_interval and evaluation_interval must be > 0")
        if not resolved_retention >= 0:
            raise ValueError("resolved_retention must be >= 0")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if not backoff_initial > 0:
            raise ValueError("backoff_initial must be > 0")
        self.targets = tuple(targets)
        self.resend_interval = resend_interval
        self.evaluation_interval = evaluation_interval
        self.resolved_retention = resolved_retention
        self.queue_size = queue_size
        self.backoff_initial = backoff_initial
        #: ``endsAt`` of a firing alert lies this far after the time it is sent.
        self.valid_for = ENDS_AT_FACTOR * max(resend_interval, evaluation_interval)
        self._clock = clock
        self._wall = wall
        self._session_factory = session_factory
        self._dests: list[_Destination] = []
        #: Per Alertmanager, keyed by its ``alertmanager`` label value (the base URL).
        self.stats: dict[str, AlertmanagerStats] = {}
        for target in self.targets:
            if target.name in self.stats:
                raise ValueError(f"Alertmanager {target.name} is configured twice")
            dest = _Destination(target, AlertmanagerStats(target.name))
            self._dests.append(dest)
            self.stats[target.name] = dest.stats
        #: Alerts refused by :meth:`update` because Alertmanager would reject them.
        self.invalid = 0
        self._tracked: dict[_Key, _Tracked] = {}
        self._progress = asyncio.Event()  # set after every delivery attempt
        self._hurry = asyncio.Event()  # set while flushing: cuts backoff waits short
        self._flushing = False
        self._running = False

    # -- input (evaluation tick) -------------------------------------------------------------
    def update(self, firing: Iterable[OutgoingAlert], resolved: Iterable[OutgoingAlert]) -> None:
        """Take this tick's firing alerts (all of them) and those that resolved this tick.

        ``ends_at`` of firing alerts is ignored; a resolved alert without ``ends_at``
        resolved now. Alerts are identified by their labels; within one call the first
        occurrence of a label set wins, and firing wins over resolved.
        """
        now = self._clock()
        wall = self._wall()
        touched: set[_Key] = set()
        for alert in firing:
            key, ok = self._accept(alert)
            if key is None or key in touched:
                continue
            touched.add(key)  # even when refused: a bad update must not resolve a known alert
            if not ok:
                continue
            if alert.ends_at is not None:
                alert = replace(alert, ends_at=None)
            t = self._tracked.get(key)
            if t is None or t.resolved_at is not None or t.alert.starts_at != alert.starts_at:
                self._tracked[key] = _Tracked(alert, now, None)
                self._enqueue(key, alert)
            elif now - t.queued_at >= self.resend_interval:
                t.alert, t.queued_at = alert, now
                self._enqueue(key, alert)
            else:
                t.alert = alert  # newer annotations go with the next resend
        for alert in resolved:
            key, ok = self._accept(alert)
            if not ok or key is None or key in touched:
                continue
            t = self._tracked.get(key)
            if t is not None and t.resolved_at is not None and t.alert.starts_at == alert.starts_at:
                continue  # already resolved: resent on schedule below
            touched.add(key)
            alert = replace(alert, ends_at=wall if alert.ends_at is None else alert.ends_at)
            self._tracked[key] = _Tracked(alert, now, now)
            self._enqueue(key, alert)
        expired: list[_Key] = []
        for key, t in self._tracked.items():
            if key in touched:
                continue
            if t.resolved_at is None:  # gone from the firing set without a resolution
                t.alert, t.resolved_at, t.queued_at = replace(t.alert, ends_at=wall), now, now
                self._enqueue(key, t.alert)
            elif now - t.resolved_at >= self.resolved_retention:
                expired.append(key)
            elif now - t.queued_at >= self.resend_interval:
                t.queued_at = now
                self._enqueue(key, t.alert)
        for key in expired:
            del self._tracked[key]

    def _accept(self, alert: OutgoingAlert) -> tuple[_Key | None, bool]:
        """The alert's identity (None if it has none) and whether Alertmanager would take it.

        Refused alerts are counted and logged.
        """
        try:
            key = tuple(sorted((k, v) for k, v in alert.labels.items() if v))
        except TypeError:  # non-string keys or values that do not sort
            key = None
        # Labels and annotation names are checked when an alert is first seen (they come
        # from static rule definitions); times change with every incident.
        known = key is not None and key in self._tracked
        problem = _time_problem(alert) if known else _problem(alert, key)
        if problem is not None:
            self.invalid += 1
            log.error(
                "alertmanager_invalid_alert", problem=problem, labels=dict(alert.labels), rate_key=problem
            )
            return key, False
        return key, True

    def _enqueue(self, key: _Key, alert: OutgoingAlert) -> None:
        for d in self._dests:
            q = d.queue
            if key in q:
                q[key] = alert
                q.move_to_end(key)
            else:
                q[key] = alert
                if len(q) > self.queue_size:
                    (lost_key, _) = q.popitem(last=False)
                    d.stats.dropped += 1
                    log.warning(
                        "alertmanager_queue_full",
                        alertmanager=d.name,
                        capacity=self.queue_size,
                        dropped_total=d.stats.dropped,
                        dropped_labels=dict(lost_key),
                        rate_key=d.name,
                    )
            d.stats.queue_depth = len(q)
            d.wake.set()

    def delivery(self, labels: Mapping[str, str]) -> Delivery:
        """Where the alert with these labels stands: pending, delivered (to at least one
        Alertmanager: an HA pair shares it by gossip) or failing, with the reason."""
        key = tuple(sorted((k, v) for k, v in labels.items() if v))
        t = self._tracked.get(key)
        if t is None:
            return Delivery(DeliveryState.NOT_SENT)
        per: dict[str, tuple[DeliveryState, str | None]] = {}
        for d in self._dests:
            outcome = t.outcome.get(d.name)
            if outcome is None:
                per[d.name] = (DeliveryState.PENDING, None)
            elif outcome == DeliveryState.DELIVERED.value:
                per[d.name] = (DeliveryState.DELIVERED, None)
            else:
                per[d.name] = (DeliveryState.FAILING, outcome)
        states = [st for st, _ in per.values()]
        if DeliveryState.DELIVERED in states:
            return Delivery(DeliveryState.DELIVERED, None, per)
        if states and all(st is DeliveryState.FAILING for st in states):
            reasons = sorted({why for _, why in per.values() if why})
            return Delivery(DeliveryState.FAILING, "; ".join(reasons), per)
        return Delivery(DeliveryState.PENDING, None, per)

    def last_failure(self, alertmanager: str) -> str | None:
        """The last failure of that Alertmanager ("connection: ..."), None after a success."""
        for d in self._dests:
            if d.name == alertmanager:
                return d.last_failure
        return None

    def _record(self, d: _Destination, batch: list[tuple[_Key, OutgoingAlert]], outcome: str) -> None:
        """Note the outcome of one attempt for each alert of the batch (its current version)."""
        for key, alert in batch:
            t = self._tracked.get(key)
            if (
                t is not None
                and t.alert.starts_at == alert.starts_at
                and (t.resolved_at is None) == (alert.ends_at is None)
            ):
                t.outcome[d.name] = outcome

    # -- delivery ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver queued alerts to every Alertmanager until cancelled."""
        if self._running:
            raise RuntimeError("AlertmanagerNotifier.run() is already running")
        self._running = True
        try:
            if not self._dests:
                await asyncio.Event().wait()
            async with asyncio.TaskGroup() as tg:
                for d in self._dests:
                    tg.create_task(self._deliver(d), name=f"alertmanager {d.name}")
        finally:
            self._running = False

    # The time limit is the point of flush (best effort, never raises), not a caller's cancel scope.
    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109
        """Try to deliver everything queued within ``timeout`` seconds; never raises on failure.

        Works whether :meth:`run` is running (its tasks retry without waiting out their
        backoff) or not (delivery tasks are started for the flush and stopped after).
        """
        if not self.pending():
            return
        temp: asyncio.Task[None] | None = None
        if not self._running:
            temp = asyncio.create_task(self.run(), name="alertmanager flush")
        self._flushing = True
        self._hurry.set()
        try:
            await asyncio.wait_for(self._drained(), timeout)
        except TimeoutError:
            log.warning(
                "alertmanager_flush_incomplete",
                timeout_s=timeout,
                pending={d.name: len(d.queue) for d in self._dests if d.queue},
            )
        finally:
            self._flushing = False
            self._hurry.clear()
            if temp is not None:
                temp.cancel()
                await asyncio.wait([temp])
                if not temp.cancelled() and temp.exception() is not None:
                    log.error("alertmanager_flush_failed", error=repr(temp.exception()))

    def pending(self) -> int:
        """Alerts queued, summed over Alertmanagers."""
        return sum(len(d.queue) for d in self._dests)

    async def _drained(self) -> None:
        while True:
            self._progress.clear()
            if not self.pending():
                return
            await self._progress.wait()

    async def _deliver(self, d: _Destination) -> None:
        try:
            while True:
                if not d.queue:
                    d.wake.clear()
                    await d.wake.wait()
                    continue
                batch, body = self._batch(d)
                if not batch:
                    continue  # everything queued was unusable
                try:
                    reason = await self._post(d, batch, body)
                except Exception:  # a bug must not end delivery to this Alertmanager
                    log.exception("alertmanager_delivery_error", alertmanager=d.name, rate_key=d.name)
                    reason = self._fail(d, batch, FailureReason.CONNECTION, "internal error (see the log)")
                self._progress.set()
                if reason is None or not reason.retryable:
                    d.stats.consecutive_failures = 0
                    continue
                d.stats.consecutive_failures += 1
                delay = self._backoff(d.stats.consecutive_failures)
                log.warning(
                    "alertmanager_send_failed",
                    alertmanager=d.name,
                    reason=reason.value,
                    alerts=len(batch),
                    pending=len(d.queue),
                    retry_in_s=round(delay, 3),
                    failures=d.stats.consecutive_failures,
                    rate_key=f"{d.name}:{reason.value}",
                )
                if self._flushing:
                    await asyncio.sleep(delay)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._hurry.wait(), delay)
        finally:
            if d.session is not None:
                session, d.session = d.session, None
                await session.close()

    def _backoff(self, failures: int) -> float:
        cap = min(self.resend_interval, FLUSH_RETRY_DELAY) if self._flushing else self.resend_interval
        base = min(cap, self.backoff_initial * 2.0 ** min(failures - 1, 32))
        return random.uniform(base / 2, base)

    def _batch(self, d: _Destination) -> tuple[list[tuple[_Key, OutgoingAlert]], bytes]:
        """The oldest queued alerts that fit in one POST, and its body."""
        now = self._wall()
        batch: list[tuple[_Key, OutgoingAlert]] = []
        parts: list[bytes] = []
        size = 2
        unusable: list[_Key] = []
        for key, alert in d.queue.items():
            try:
                blob = json.dumps(
                    alert_payload(alert, now=now, valid_for=self.valid_for), separators=(",", ":")
                ).encode()
            except Exception as exc:  # update() checks alerts; this is the last guard against a poison entry
                unusable.append(key)
                log.error(
                    "alertmanager_unusable_alert",
                    alertmanager=d.name,
                    labels=dict(key),
                    error=repr(exc),
                    rate_key="unusable",
                )
                continue
            if parts and size + len(blob) + 1 > MAX_BATCH_BYTES:
                break
            batch.append((key, alert))
            parts.append(blob)
            size += len(blob) + 1
        for key in unusable:
            del d.queue[key]
            self.invalid += 1
        d.stats.queue_depth = len(d.queue)
        return batch, b"[" + b",".join(parts) + b"]"

    async def _post(
        self, d: _Destination, batch: list[tuple[_Key, OutgoingAlert]], body: bytes
    ) -> FailureReason | None:
        if d.session is None:
            try:
                d.session = await self._session_factory(d.target)
            except (OSError, ValueError) as exc:  # unreadable or bad CA/cert/key file
                log.error(
                    "alertmanager_tls_setup_failed", alertmanager=d.name, error=str(exc), rate_key=d.name
                )
                return self._fail(d, batch, FailureReason.TLS, str(exc))
        status = 0
        text = ""
        try:
            async with d.session.post(
                d.target.api_url,
                data=body,
                allow_redirects=False,
                headers={"Content-Type": "application/json"},
            ) as resp:
                status = resp.status
                if 200 <= status < 300:
                    await resp.read()
                else:
                    text = (await resp.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace")
        except TimeoutError:
            return self._fail(d, batch, FailureReason.TIMEOUT, f"no answer within {d.target.timeout:g} s")
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            log.debug("alertmanager_tls_error", alertmanager=d.name, error=str(exc))
            return self._fail(d, batch, FailureReason.TLS, str(exc))
        except (aiohttp.ClientError, OSError) as exc:
            log.debug("alertmanager_connection_error", alertmanager=d.name, error=repr(exc))
            return self._fail(d, batch, FailureReason.CONNECTION, str(exc) or type(exc).__name__)
        if 200 <= status < 300:
            self._delivered(d, batch)
            self._record(d, batch, DeliveryState.DELIVERED.value)
            d.last_failure = None
            d.stats.sent += len(batch)
            d.stats.posts += 1
            d.stats.last_success = self._wall()
            if d.stats.consecutive_failures:
                log.info(
                    "alertmanager_recovered", alertmanager=d.name, after_failures=d.stats.consecutive_failures
                )
            return None
        if status >= 500:
            log.debug("alertmanager_server_error", alertmanager=d.name, status=status, body=text[:512])
            return self._fail(d, batch, FailureReason.HTTP_5XX, f"HTTP {status} {text[:120]}".strip())
        # 4xx (and anything else that is neither success nor a server error): not retried.
        self._delivered(d, batch)
        log.warning(
            "alertmanager_rejected",
            alertmanager=d.name,
            status=status,
            alerts=len(batch),
            body=text[:512],
            rate_key=f"{d.name}:{status}",
        )
        return self._fail(d, batch, FailureReason.HTTP_4XX, f"rejected: HTTP {status} {text[:120]}".strip())

    def _delivered(self, d: _Destination, batch: list[tuple[_Key, OutgoingAlert]]) -> None:
        """Remove what was answered, unless a newer version was queued meanwhile."""
        for key, alert in batch:
            if d.queue.get(key) is alert:
                del d.queue[key]
        d.stats.queue_depth = len(d.queue)

    def _fail(
        self, d: _Destination, batch: list[tuple[_Key, OutgoingAlert]], reason: FailureReason, detail: str
    ) -> FailureReason:
        """A failed attempt: counted, and noted on the destination and on each alert of it."""
        d.last_failure = f"{reason.value}: {detail}" if detail else reason.value
        self._record(d, batch, d.last_failure)
        return self._failed(d, len(batch), reason)

    @staticmethod
    def _failed(d: _Destination, n: int, reason: FailureReason) -> FailureReason:
        d.stats.failed[reason] += n
        d.stats.failed_posts[reason] += 1
        return reason

    # -- metrics ----------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        """Metric families of the delivery counters (for the daemon's custom collector)."""
        label = ["alertmanager"]
        sent = CounterMetricFamily(
            "anbo_alertmanager_notifications_sent",
            "Alerts accepted by an Alertmanager (2xx answers).",
            labels=label,
        )
        failed = CounterMetricFamily(
            "anbo_alertmanager_notifications_failed",
            "Alerts in POSTs to an Alertmanager that failed, by reason; each retry counts again.",
            labels=[*label, "reason"],
        )
        failed_posts = CounterMetricFamily(
            "anbo_alertmanager_requests_failed",
            "POSTs to an Alertmanager that failed, by reason.",
            labels=[*label, "reason"],
        )
        dropped = CounterMetricFamily(
            "anbo_alertmanager_notifications_dropped",
            "Alerts dropped from a full Alertmanager queue (oldest first).",
            labels=label,
        )
        depth = GaugeMetricFamily(
            "anbo_alertmanager_queue_length",
            "Alerts waiting to be delivered to an Alertmanager.",
            labels=label,
        )
        last = GaugeMetricFamily(
            "anbo_alertmanager_last_success_timestamp_seconds",
            "Time of the last successful POST to an Alertmanager (Unix seconds; 0 if none yet).",
            labels=label,
        )
        for d in self._dests:
            s = d.stats
            sent.add_metric([d.name], s.sent)
            for reason in FailureReason:
                failed.add_metric([d.name, reason.value], s.failed[reason])
                failed_posts.add_metric([d.name, reason.value], s.failed_posts[reason])
            dropped.add_metric([d.name], s.dropped)
            depth.add_metric([d.name], s.queue_depth)
            last.add_metric([d.name], s.last_success or 0.0)
        capacity = GaugeMetricFamily(
            "anbo_alertmanager_queue_capacity",
            "Capacity of each Alertmanager queue, in alerts.",
            value=self.queue_size,
        )
        invalid = CounterMetricFamily(
            "anbo_alertmanager_alerts_invalid",
            "Alerts not sent because Alertmanager would reject them.",
            value=self.invalid,
        )
        firing = sum(1 for t in self._tracked.values() if t.resolved_at is None)
        tracked = GaugeMetricFamily(
            "anbo_alertmanager_alerts",
            "Alerts being sent and re-sent to Alertmanager, by state.",
            labels=["state"],
        )
        tracked.add_metric(["firing"], firing)
        tracked.add_metric(["resolved"], len(self._tracked) - firing)
        yield from (sent, failed, failed_posts, dropped, depth, capacity, last, invalid, tracked)


def _problem(alert: OutgoingAlert, key: _Key | None) -> str | None:
    """Why Alertmanager would reject this alert (and the whole batch with it), or None."""
    if key is None:
        return "labels must map strings to strings"
    if not key:
        return "no labels"
    for name, value in key:
        if not isinstance(name, str) or not _NAME.match(name):
            return f"invalid label name {name!r}"
        if not isinstance(value, str):
            return f"label {name} is not a string"
    for name, value in alert.annotations.items():
        if not isinstance(name, str) or not _NAME.match(name):
            return f"invalid annotation name {name!r}"
        if not isinstance(value, str):
            return f"annotation {name} is not a string"
    if not isinstance(alert.generator_url, str):
        return "generator_url is not a string"
    return _time_problem(alert)


def _time_problem(alert: OutgoingAlert) -> str | None:
    for what, ts in (("starts_at", alert.starts_at), ("ends_at", alert.ends_at)):
        if ts is not None and not (
            isinstance(ts, int | float) and math.isfinite(ts) and _MIN_TS <= ts <= _MAX_TS
        ):
            return f"{what} is not a usable Unix time: {ts!r}"
    return None
