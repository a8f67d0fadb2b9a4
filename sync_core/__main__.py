"""`python -m sync_core`: the operator's command line (see sync_core.ops.cli)."""

from sync_core.ops.cli import main

raise SystemExit(main())
