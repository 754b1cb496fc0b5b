"""Taking a trained network out: the serving contract, prediction, evaluation, SavedModel and TFLite export, the REST client.

This package's ``__init__`` imports nothing, so flag errors and ``--help`` stay instant.
"""
