"""Frozen entry point of the windowed app (`vsr-desktop`)."""

import sys

from vsr_desktop.gui.app import main

if __name__ == "__main__":
    sys.exit(main())
