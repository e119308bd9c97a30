"""The operations: plain async functions shared by the GraphQL and REST faces.

Nothing in this package imports strawberry or fastapi (tests/test_layering.py checks it).
"""
