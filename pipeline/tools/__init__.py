"""Beside the pipeline: the benchmark, the demo-data generator, and the process settings the CLI applies."""
