"""The networks: the plain/residual builders, their architecture table, and the reference PyTorch weights.

This package's ``__init__`` imports nothing, so flag errors and ``--help`` stay instant.
"""
