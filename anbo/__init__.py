"""The ``anbo`` command: the command line and the demo that wire the house together.

The daemon lives in ``monitor/``, the station simulator in ``simulator/``; this package
sits above both and is imported by nothing of theirs.
"""

from monitor import __version__

__all__ = ["__version__"]
