"""Base vs adapter: generation, pluggable metrics, comparison reports and the quality gate."""
