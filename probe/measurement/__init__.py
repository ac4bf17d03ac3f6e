"""The measurement layer: one experiment, once, into its envelope.

Below the runner (which only schedules) and the experiments (which are more of
the same), above the measuring steps of `probe.measure` and the writers of
`probe.results`.
"""

from .context import MeasureContext, Measurement, first_failure
from .envelope import RunStamp, envelope, measure
from .experiment import Experiment, ListedTarget, ListedTargetOverQuic

__all__ = ["Experiment", "ListedTarget", "ListedTargetOverQuic", "MeasureContext",
           "Measurement", "RunStamp", "envelope", "first_failure", "measure"]
