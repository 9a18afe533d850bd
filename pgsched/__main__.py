"""`python -m pgsched ...` is the same as the `pgsched` command."""

from pgsched.cli.app import main

main()
