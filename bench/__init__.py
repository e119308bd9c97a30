"""Benchmarks of what users feel (`make bench`, `python -m bench --help`). Not tests: they
print tables and write bench/results/; nothing here gates CI."""
