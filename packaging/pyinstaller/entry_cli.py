"""Frozen entry point of the command line (`vsr`)."""

import sys

from vsr_desktop.core.gpu_addon import activate

if __name__ == "__main__":
    activate()  # before torch is imported: an installed CUDA add-on goes ahead of the CPU torch
    from vsr_desktop.cli import main

    sys.exit(main())
