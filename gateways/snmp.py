"""The SNMP side: GET a map's OIDs from an agent with pysnmp 7's asyncio API.

v2c (community) and v3 (USM: authNoPriv with an auth key, authPriv with a privacy key
too). All the map's OIDs go in one GET (in chunks of :data:`MAX_VARBINDS`); a varbind
answered ``noSuchObject``/``noSuchInstance`` is a point error, the others are used.

How failures read:

* no answer within ``timeout`` × (``retries`` + 1): ``timeout``. SNMPv2c agents do not
  answer a wrong community at all, so the detail says it may be that too;
* SNMPv3 reports (unknown user, wrong digest, decryption error, unsupported level):
  ``auth``, with pysnmp's words (a wrong key is told apart from a dead agent);
* anything else pysnmp indicates (a malformed answer...): ``protocol``;
* an error status in the response PDU (``genErr``...): ``device_error`` for the whole
  poll, since it does not say which varbind failed reliably across agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pysnmp.error import PySnmpError
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    get_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import auth as usm
from pysnmp.proto import errind
from pysnmp.proto.rfc1902 import Counter32, Counter64, Gauge32, Integer, OctetString, TimeTicks, Unsigned32
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from gateways.config import Secrets, SnmpSource
from gateways.mapping import DeviceMap, PointError, PointSpec, Raw, convert
from gateways.poller import DeviceError, ReadResult

__all__ = ["MAX_VARBINDS", "SnmpReader"]

#: Varbinds per GET request (keeps responses well below a UDP datagram's size).
MAX_VARBINDS: Final = 32

_AUTH: Final = {
    "md5": usm.USM_AUTH_HMAC96_MD5,
    "sha": usm.USM_AUTH_HMAC96_SHA,
    "sha224": usm.USM_AUTH_HMAC128_SHA224,
    "sha256": usm.USM_AUTH_HMAC192_SHA256,
    "sha384": usm.USM_AUTH_HMAC256_SHA384,
    "sha512": usm.USM_AUTH_HMAC384_SHA512,
}
_PRIV: Final = {
    "des": usm.USM_PRIV_CBC56_DES,
    "3des": usm.USM_PRIV_CBC168_3DES,
    "aes128": usm.USM_PRIV_CFB128_AES,
    "aes192": usm.USM_PRIV_CFB192_AES,
    "aes256": usm.USM_PRIV_CFB256_AES,
}
_AUTH_FAILURES: Final = (
    errind.UnknownUserName,
    errind.WrongDigest,
    errind.DecryptionError,
    errind.UnsupportedSecurityLevel,
    errind.AuthenticationFailure,
    errind.AuthenticationError,
    errind.UnknownSecurityName,
    errind.UnknownCommunityName,
)


def _raw(value: Any) -> Raw:
    """An SNMP value → a raw value for :func:`gateways.mapping.convert`."""
    if isinstance(value, Integer | Counter32 | Counter64 | Gauge32 | TimeTicks | Unsigned32):
        return int(value)
    if isinstance(value, OctetString):
        return bytes(value.asOctets()).decode("utf-8", errors="replace")
    raise PointError("bad_type", f"{type(value).__name__} is not a number or a string")


class SnmpReader:
    """One agent: its engine, credentials and transport target (made on first use)."""

    protocol = "snmp"

    def __init__(self, src: SnmpSource, dmap: DeviceMap, secrets: Secrets) -> None:
        self.src = src
        self.points: tuple[PointSpec, ...] = dmap.points
        self.address = f"{src.host}:{src.port}"
        self.engine: SnmpEngine | None = None
        self.auth: CommunityData | UsmUserData
        if src.version == "2c":
            assert secrets.community is not None
            self.auth = CommunityData(secrets.community, mpModel=1)
        else:
            assert src.user is not None and secrets.auth_key is not None
            self.auth = UsmUserData(
                src.user,
                authKey=secrets.auth_key,
                privKey=secrets.priv_key,
                authProtocol=_AUTH[src.auth_protocol],
                privProtocol=_PRIV[src.priv_protocol] if secrets.priv_key else usm.USM_PRIV_NONE,
            )
        self.context = ContextData(contextName=src.context)
        self._target: UdpTransportTarget | None = None
        #: the current engine has had an answer from the agent
        self._answered = False

    async def _transport(self) -> UdpTransportTarget:
        if self._target is None:
            try:
                self._target = await UdpTransportTarget.create(
                    (self.src.host, self.src.port), timeout=self.src.timeout, retries=self.src.retries
                )
            except PySnmpError as exc:
                raise DeviceError("dns", f"{self.src.host}: cannot resolve") from exc
        return self._target

    async def read(self) -> ReadResult:
        target = await self._transport()
        if self.engine is None:
            self.engine = SnmpEngine()  # ~0.1 s of CPU: made again only when needed
            self._answered = False
        result = ReadResult()
        try:
            for start in range(0, len(self.points), MAX_VARBINDS):
                chunk = self.points[start : start + MAX_VARBINDS]
                await self._get(self.engine, target, chunk, result)
        except DeviceError:
            if self._answered:
                # The agent answered this engine before: start afresh. An agent that
                # restarted has a new boot count and time (SNMPv3), which a fresh engine
                # discovers again; pysnmp's cached view of the old one keeps its requests
                # outside the time window. The address is resolved again too.
                await self.close()
                self._target = None
            raise
        self._answered = True
        return result

    async def _get(
        self, engine: SnmpEngine, target: UdpTransportTarget, points: Sequence[PointSpec], result: ReadResult
    ) -> None:
        oids = [ObjectType(ObjectIdentity(p.oid)) for p in points]
        try:
            indication, status, index, varbinds = await get_cmd(
                engine, self.auth, target, self.context, *oids, lookupMib=False
            )
        except PySnmpError as exc:
            raise DeviceError("protocol", _short(str(exc))) from exc
        if indication:
            raise _indication_error(indication, self.src)
        if status:
            where = f" at {points[int(index) - 1].reading}" if 0 < int(index) <= len(points) else ""
            raise DeviceError("device_error", f"agent answered {status.prettyPrint()}{where}")
        by_oid = {str(vb[0]): vb[1] for vb in varbinds}
        for p in points:
            value = by_oid.get(str(p.oid))
            try:
                if value is None:
                    raise PointError("missing", f"{p.oid} not in the answer")
                if isinstance(value, NoSuchObject | NoSuchInstance | EndOfMibView):
                    raise PointError("no_such_object", f"{p.oid}: {type(value).__name__}")
                result.values[p.reading] = convert(p, _raw(value))
            except PointError as exc:
                result.errors[p.reading] = exc

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.close_dispatcher()
            self.engine = None


def _indication_error(indication: Any, src: SnmpSource) -> DeviceError:
    text = str(indication)
    if isinstance(indication, errind.RequestTimedOut):
        tries = src.retries + 1
        hint = ", or wrong community" if src.version == "2c" else ", or wrong priv key"
        return DeviceError(
            "timeout", _short(f"no answer in {tries}x{src.timeout:g}s (agent down, unreachable{hint})")
        )
    if isinstance(indication, _AUTH_FAILURES):
        return DeviceError("auth", _short(f"SNMPv3 {text}"))
    return DeviceError("protocol", _short(text))


def _short(text: str) -> str:
    return " ".join(text.split())[:64]
