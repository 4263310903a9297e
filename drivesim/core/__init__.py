"""State and geometry types shared by every layer (imports nothing else of drivesim)."""

from drivesim.core.types import AgentType, ControlMode
from drivesim.core.state import SimState
from drivesim.core.seeding import seed_everything, make_generator

__all__ = ["AgentType", "ControlMode", "SimState", "seed_everything", "make_generator"]
