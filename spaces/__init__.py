"""Optuna define-by-run search spaces for the auxiliary-loss weights, registered by name."""
