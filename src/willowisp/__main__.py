"""``python -m willowisp``."""

from willowisp.cli.main import main

raise SystemExit(main())
