"""`python -m revmon` runs the command line."""

from revmon.cli import main

raise SystemExit(main())
