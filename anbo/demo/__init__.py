"""``anbo demo``: the whole system on one machine, in one command.

An embedded MQTT broker (amqtt, pure Python, on a free loopback port — unless
``--mqtt-url`` names a real one), the station simulator playing a bundled scenario,
and the real daemon with its rules, serving ``/metrics`` (and pushing to an
Alertmanager when ``--alertmanager`` is given), with a live terminal view of the
services, their levels and states, and the alerts as they fire and resolve.
"""
