"""`python -m tuneops.cli`: the same as the `tuneops` command."""

from __future__ import annotations

from tuneops.cli.main import main

main()
