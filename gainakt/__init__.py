"""GainAKT2Exp: interpretable knowledge tracing with mastery and learning-gain estimates."""

__version__ = "0.1.0"
