"""Checking a study (doctor) and rebuilding the rows it lost from its trials' checkpoints."""
