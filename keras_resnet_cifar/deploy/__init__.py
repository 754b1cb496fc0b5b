"""Taking a trained network out: prediction, evaluation, SavedModel and TFLite export, the
serving clients. Imports nothing, so flag errors and `--help` stay instant."""
