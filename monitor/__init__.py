"""anbo's daemon: lifecycle and every I/O edge (settings, MQTT, wire contract, HTTP, systemd)."""

__version__ = "0.1.0"
