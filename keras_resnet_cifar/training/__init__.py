"""Training a network.

``loop`` (train_and_evaluate), ``distribution``, ``batch_norm`` (the fused
BatchNorm), ``callbacks``, ``optimizer``; the run directory: ``run_files`` (its
files), ``lock`` (its lock and resume plan), ``resume_state`` (backup/state.npz).

This package's ``__init__`` imports nothing, so flag errors and ``--help`` stay instant.
"""
