"""``python -m tabops``: the same as the ``tabops`` command."""

from tabops.cli import main

if __name__ == "__main__":  # spawned training workers re-import this module: no side effects
    main()
