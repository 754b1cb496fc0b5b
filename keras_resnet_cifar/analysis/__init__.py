"""Turning runs into evidence: the depth study, curves, layer statistics, plots, benchmarks and the report.

This package's ``__init__`` imports nothing, so flag errors and ``--help`` stay instant.
"""
