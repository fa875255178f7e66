"""`python -m swaptron` runs the command line."""

from swaptron.cli import main

raise SystemExit(main())
