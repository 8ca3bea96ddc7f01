"""A distributed multi-objective search over GainAKT2Exp's auxiliary-loss weights.

Wings, each importing only the ones listed before it:

- `search.schema`, `search.spec`: the study's column names and a sweep's spec (the vocabulary).
- `search.store`: where a study is kept (its folder, the Parquet segments, the tables' schemas,
  the Optuna journal).
- `search.analysis`: what a study's figures say (Pareto fronts, intervals, importances).
- `search.run`: running a sweep on Ray (spec to trials, the searcher, schedulers, the recorder,
  the trainable, the cluster session, the lease) and confirming its front.
- `search.repair`: checking a study and rebuilding what it lost.
- `search.report`: what a person reads (the HTML page, Markdown, the terminal).
- `search.cli`: the `gainakt-search` command on top.
"""
