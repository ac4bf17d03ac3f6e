"""Analysis of probe results: loading, rate estimates, verdicts, reports."""

from .load import Results, load

__all__ = ["Results", "load"]
