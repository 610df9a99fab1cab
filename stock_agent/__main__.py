"""`python -m stock_agent` runs the CLI."""

import sys

from stock_agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
