"""The bureau tier: stations' events over MQTT into PostgreSQL (``anbo bureau``)."""
