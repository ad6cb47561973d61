"""``python -m monitor`` is the ``anbo`` command."""

from monitor.cli import main

raise SystemExit(main())
