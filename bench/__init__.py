"""Benchmarks of stock-agent against the seed-style baseline: `python -m bench [--quick]`.

See bench/README.md for what each measurement means and how to read the table.
"""
