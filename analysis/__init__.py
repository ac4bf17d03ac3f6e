"""Analysis of probe results: loading, rate estimates, verdicts, reports."""

from .load import Results, load, load_dataset

__all__ = ["Results", "load", "load_dataset"]
