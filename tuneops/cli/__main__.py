"""`python -m tuneops.cli`: the same as the `tuneops` command."""

from tuneops.cli.main import main

main()
