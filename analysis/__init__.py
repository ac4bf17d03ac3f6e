"""Analysis of probe results: loading, rate estimates, verdicts, reports."""
