"""`python -m probe.server ...`: the same command as `probe serve` (how the lab starts it)."""

from .cli import serve

serve(prog_name="probe serve")
