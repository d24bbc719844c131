"""Benchmarks of the pipeline's own code; run one as python -m benchmarks.<name> from the project root."""
