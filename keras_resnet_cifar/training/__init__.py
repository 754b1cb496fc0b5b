"""Training a network: loop (train_and_evaluate), callbacks, optimizer, batch_norm,
distribution; a run directory's rules: lock and resume_state (its files: run_files).
Imports nothing, so errors and --help stay instant."""
