"""`python -m stock_agent` runs the CLI."""

from stock_agent.cli import main

if __name__ == "__main__":
    main()
