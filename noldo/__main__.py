"""``python -m noldo``: the same command line as ``noldo``."""

from noldo.cli import main

main()
