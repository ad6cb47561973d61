"""The Modbus TCP side: read a map's registers and bits with pymodbus 3's asyncio client.

Points of one table (holding, input, coil, discrete) that lie close together are read
in one request (:func:`plan_blocks`: at most ``max_registers`` per request, gaps of at
most ``max_gap`` unused addresses). When the device answers a request with an
"illegal address/function/value" exception, that block is split and its points are
asked one by one from then on, so one wrong address in a map costs that point, not its
neighbours.

How failures read:

* the TCP connection cannot be made: ``refused`` / ``unreachable`` with the socket's
  words; it is made again on the next attempt (the poller's backoff paces attempts);
* no answer within ``timeout``: ``timeout``; the connection is closed and made again;
* exception codes 4 (device failure), 6 (busy), 10/11 (a gateway's path or target
  device gone): ``device_failure``, ``device_busy``, ``gateway_path``,
  ``gateway_no_response`` for the whole poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from gateways.config import ModbusSource
from gateways.mapping import (
    REGISTER_COUNT,
    DeviceMap,
    PointError,
    PointSpec,
    Table,
    convert,
    decode_registers,
)
from gateways.poller import DeviceError, ReadResult

__all__ = ["Block", "ModbusReader", "plan_blocks"]

#: Most bits one read_coils / read_discrete_inputs may ask for.
MAX_BITS: Final = 2000

#: Exception codes that say the point's address (or function) is wrong: a point error.
_POINT_EXCEPTIONS: Final = {1: "illegal_function", 2: "illegal_address", 3: "illegal_value"}
#: Exception codes about the device as a whole.
_DEVICE_EXCEPTIONS: Final = {
    4: ("device_failure", "device failure (exception 4)"),
    5: ("device_busy", "acknowledged, not done (exception 5)"),
    6: ("device_busy", "device busy (exception 6)"),
    10: ("gateway_path", "gateway path unavailable (exception 10)"),
    11: ("gateway_no_response", "gateway: target device did not respond (exception 11)"),
}


@dataclass(slots=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``start``."""

    table: Table
    start: int
    count: int
    points: list[PointSpec] = field(default_factory=list)


def _width(dmap: DeviceMap, p: PointSpec) -> int:
    return 1 if p.table in ("coil", "discrete") else REGISTER_COUNT[dmap.register_type(p)]


def plan_blocks(dmap: DeviceMap, max_registers: int = 100, max_gap: int = 8) -> list[Block]:
    """Group the map's points into as few reads as the limits allow (in address order per table)."""
    blocks: list[Block] = []
    for table in ("holding", "input", "coil", "discrete"):
        limit = MAX_BITS if table in ("coil", "discrete") else max_registers
        pts = sorted((p for p in dmap.points if p.table == table), key=lambda p: p.address or 0)
        current: Block | None = None
        for p in pts:
            assert p.address is not None
            end = p.address + _width(dmap, p)
            if (
                current is not None
                and p.address - (current.start + current.count) <= max_gap
                and max(end, current.start + current.count) - current.start <= limit
            ):
                current.count = max(end, current.start + current.count) - current.start
                current.points.append(p)
                continue
            current = Block(p.table or "holding", p.address, end - p.address, [p])
            blocks.append(current)
    return blocks


class ModbusReader:
    """One Modbus TCP device (unit id) over one connection, made again when lost."""

    protocol = "modbus"

    def __init__(self, src: ModbusSource, dmap: DeviceMap) -> None:
        self.src = src
        self.dmap = dmap
        self.address = f"{src.host}:{src.port}"
        self.blocks = plan_blocks(dmap, src.max_registers, src.max_gap)
        self._client: AsyncModbusTcpClient | None = None

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        await self.close()
        # pymodbus's own reconnection is off (reconnect_delay 0): the poller's backoff paces attempts.
        client = AsyncModbusTcpClient(
            self.src.host, port=self.src.port, timeout=self.src.timeout, retries=0, reconnect_delay=0
        )
        ok = await client.connect()
        if not ok:
            client.close()
            raise await self._why_not()
        self._client = client
        return client

    async def _why_not(self) -> DeviceError:
        """pymodbus says only "not connected": ask the socket why."""
        try:
            async with asyncio.timeout(self.src.timeout):
                _, writer = await asyncio.open_connection(self.src.host, self.src.port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        except TimeoutError:
            return DeviceError(
                "timeout", f"no TCP connection to {self.address} within {self.src.timeout:g} s"
            )
        except ConnectionRefusedError:
            return DeviceError("refused", f"connection refused by {self.address}")
        except OSError as exc:
            return DeviceError("unreachable", f"{self.address}: {exc.strerror or exc}"[:64])
        # The socket connects now: pymodbus's attempt was slower than its timeout.
        return DeviceError(
            "timeout", f"Modbus connection to {self.address} not made in {self.src.timeout:g} s"
        )

    async def read(self) -> ReadResult:
        client = await self._connected()
        result = ReadResult()
        try:
            for block in list(self.blocks):
                await self._read_block(client, block, result)
        except ModbusIOException:
            await self.close()
            raise DeviceError("timeout", f"no Modbus answer within {self.src.timeout:g} s") from None
        except ConnectionException:
            await self.close()
            raise DeviceError("lost", f"connection to {self.address} lost") from None
        except ModbusException as exc:
            await self.close()
            raise DeviceError("protocol", str(exc)[:64]) from None
        return result

    async def _request(self, client: AsyncModbusTcpClient, table: Table, start: int, count: int) -> Any:
        unit = self.src.unit
        if table == "holding":
            return await client.read_holding_registers(start, count=count, device_id=unit)
        if table == "input":
            return await client.read_input_registers(start, count=count, device_id=unit)
        if table == "coil":
            return await client.read_coils(start, count=count, device_id=unit)
        return await client.read_discrete_inputs(start, count=count, device_id=unit)

    async def _read_block(self, client: AsyncModbusTcpClient, block: Block, result: ReadResult) -> None:
        response = await self._request(client, block.table, block.start, block.count)
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            if code in _DEVICE_EXCEPTIONS:
                reason, detail = _DEVICE_EXCEPTIONS[code]
                raise DeviceError(reason, detail)
            if len(block.points) > 1:
                # Which point is wrong? Ask them one by one, now and from now on.
                i = self.blocks.index(block)
                singles = [
                    Block(block.table, p.address or 0, _width(self.dmap, p), [p]) for p in block.points
                ]
                self.blocks[i : i + 1] = singles
                for single in singles:
                    await self._read_block(client, single, result)
                return
            reason = _POINT_EXCEPTIONS.get(code, f"exception_{code}")
            p = block.points[0]
            result.errors[p.reading] = PointError(reason, f"{block.table} {p.address}: exception {code}")
            return
        for p in block.points:
            try:
                result.values[p.reading] = convert(p, self._raw(block, p, response))
            except PointError as exc:
                result.errors[p.reading] = exc

    def _raw(self, block: Block, p: PointSpec, response: Any) -> int | float:
        assert p.address is not None
        offset = p.address - block.start
        if block.table in ("coil", "discrete"):
            bits: Sequence[bool] = response.bits
            if offset >= len(bits):
                raise PointError("short_read", f"{block.table} {p.address}: not in the answer")
            return 1 if bits[offset] else 0
        regs: Sequence[int] = response.registers
        n = REGISTER_COUNT[self.dmap.register_type(p)]
        return decode_registers(
            regs[offset : offset + n], self.dmap.register_type(p), self.dmap.word_order_of(p)
        )

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
