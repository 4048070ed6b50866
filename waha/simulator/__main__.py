"""Entry point: python -m waha.simulator."""
import os
import sys

from .cli import main

if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # State is already on disk; do not wait for webhook threads stuck on a slow receiver.
    os._exit(code)
