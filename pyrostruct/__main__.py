"""``python -m pyrostruct`` runs the ``pyrostruct`` command line."""

from pyrostruct.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
