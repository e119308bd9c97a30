"""Infrastructure leaves: settings, database, security, clock, logging, metrics, rate limits,
the error tree and the broker. Nothing here imports an operation (tests/test_layering.py).
"""
