"""State and geometry types shared by every layer (imports nothing else of drivesim)."""

from drivesim.core.types import AgentType, ControlMode
from drivesim.core.state import SimState

__all__ = ["AgentType", "ControlMode", "SimState"]
