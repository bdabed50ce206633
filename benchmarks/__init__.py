"""pyhost benchmarks: a report, not a test suite. Run ``python benchmarks/run.py``."""
