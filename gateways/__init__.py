"""Gateways: real signal sources (audio capture, SNMP and Modbus transmitter controllers) → MQTT."""
