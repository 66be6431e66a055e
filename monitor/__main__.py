"""`python -m monitor` is the `gateway-monitor` command."""

from .cli import main

raise SystemExit(main())
