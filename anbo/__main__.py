"""``python -m anbo`` is the ``anbo`` command."""

from anbo.cli import main

raise SystemExit(main())
