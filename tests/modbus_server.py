"""A Modbus TCP server for the gateway's tests: pymodbus's own server, in a subprocess.

    python tests/modbus_server.py PORT [UNIT]

serves unit UNIT (default 1) on 127.0.0.1:PORT with 200 holding registers, 200 input
registers, 64 coils and 64 discrete inputs, all 0, and prints ``ready`` once it
listens. Commands on standard input change what it serves, one per line:

    set holding 10 1234 5678     registers from address 10 (input, holding)
    set coil 3 1                 bits from address 3 (coil, discrete)

and it answers ``ok`` (or ``error: why``) on standard output. Changes take effect for
the next request, through the device's ``action`` hook (pymodbus calls it on every
access with the live register list of the table asked for).
"""

from __future__ import annotations

import asyncio
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

SIZES = {"coil": 64, "discrete": 64, "holding": 200, "input": 200}
#: function code → table
TABLE_OF = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    4: "input",
}
pending: dict[str, dict[int, int]] = {t: {} for t in SIZES}


async def apply_pending(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> None:
    table = TABLE_OF.get(function_code)
    if table is None:
        return
    updates = pending[table]
    if table in ("coil", "discrete"):
        # Bit tables keep 16 bits per register (bit i of the table: register i // 16, bit i % 16).
        for bit, value in list(updates.items()):
            reg, off = divmod(bit, 16)
            if value:
                registers[reg - start_address] |= 1 << off
            else:
                registers[reg - start_address] &= ~(1 << off) & 0xFFFF
    else:
        for addr, value in list(updates.items()):
            registers[addr - start_address] = value
    updates.clear()


async def commands() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        parts = line.split()
        try:
            if len(parts) < 4 or parts[0] != "set" or parts[1] not in SIZES:
                raise ValueError(f"expected: set TABLE ADDRESS VALUE..., got {line.strip()!r}")
            start = int(parts[2])
            for i, text in enumerate(parts[3:]):
                value = int(text)
                if not 0 <= value <= 0xFFFF or not 0 <= start + i < SIZES[parts[1]]:
                    raise ValueError(f"{parts[1]} {start + i} = {value}: out of range")
                pending[parts[1]][start + i] = value
        except ValueError as exc:
            print(f"error: {exc}", flush=True)
        else:
            print("ok", flush=True)


async def main() -> None:
    port = int(sys.argv[1])
    unit = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    bits = DataType.BITS
    device = SimDevice(
        id=unit,
        simdata=(
            [SimData(0, count=SIZES["coil"] // 16, values=0, datatype=bits)],
            [SimData(0, count=SIZES["discrete"] // 16, values=0, datatype=bits)],
            [SimData(0, count=SIZES["holding"], values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=SIZES["input"], values=0, datatype=DataType.REGISTERS)],
        ),
        action=apply_pending,
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    print("ready", flush=True)
    await commands()
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
