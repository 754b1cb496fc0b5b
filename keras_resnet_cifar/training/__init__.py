"""Training a network: the loop, distribution, the fused BatchNorm, callbacks, the optimiser and the run directory.

This package's ``__init__`` imports nothing, so flag errors and ``--help`` stay instant.
"""
