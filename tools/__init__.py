"""Instructor tooling of lr-workbook (not part of the lrtools package): ``python -m tools.classroom``."""
