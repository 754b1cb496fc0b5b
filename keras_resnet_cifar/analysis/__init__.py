"""Turning runs into evidence: the study, its statistics and figures, benchmarks, the report.

Imports nothing, so that flag errors and --help stay instant."""
