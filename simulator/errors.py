"""The simulator's one deliberate error."""

from __future__ import annotations


class SimulationError(RuntimeError):
    """The simulation cannot go on; the message says where and why."""
