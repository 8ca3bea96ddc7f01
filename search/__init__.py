"""Ray Tune orchestration of GainAKT2Exp trainings, the Parquet store, Pareto analysis and the CLI."""
