"""`python -m sync_core`: the operator's command line (see sync_core.cli)."""

from sync_core.cli import main

raise SystemExit(main())
