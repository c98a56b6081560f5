"""Benchmarks of lr-workbook (not part of the lrtools package): ``python -m benchmarks.bench``."""
