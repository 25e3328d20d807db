"""Frozen entry point of the command line (`vsr`)."""

import sys

from vsr_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
