"""Experiments over the library: data preparation, training runs, benchmark suites, reports."""
