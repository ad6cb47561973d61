"""Gateways: real signal sources turned into the wire contract over MQTT.

Each gateway is a process of its own beside the station daemon (``anbo capture``: audio
through ffmpeg; ``anbo poll``: the SNMP and Modbus transmitter pollers): it reads a source the station
already has (an off-air receiver's audio output or stream, a transmitter's remote-control
interface), and publishes what the daemon expects, per ``docs/telemetry-contract.md``, to
the station's broker. The daemon cannot tell a gateway from any other publisher.

Gateways import monitor's wire contract (:mod:`monitor.wire`) and settings
(:mod:`monitor.settings`: the station config holds their sections, so ``anbo check``
validates them with the daemon's one-line errors) and its publisher
(:mod:`monitor.publisher`: bounded, reconnecting, QoS 1, shared with the simulator),
never the other way; they do not import each other's internals.
"""
