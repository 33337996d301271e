"""``python -m tabops``: the same as the ``tabops`` command."""

from tabops.cli import main

main()
