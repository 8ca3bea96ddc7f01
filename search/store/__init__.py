"""Where a study is kept: its folder, the Parquet segments of its tables and the Optuna journal."""
