"""Benchmarks of the Connector Gateway (`make bench` = `python -m bench`). See README.md."""
