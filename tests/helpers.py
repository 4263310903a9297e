"""Small hand-made scenarios for tests."""

import numpy as np

from drivesim.core.scenario import Scenario
from drivesim.core.types import AgentType, ControlMode


def make_scenario(road, agents, route=(0,), duration=10.0, name="hand", **extra) -> Scenario:
    """agents: list of dicts with x, y, yaw, speed, and optional length, width, type, mode, v0.
    The first is the ego."""
    col = lambda k, d: np.array([a.get(k, d) for a in agents], dtype=float)
    modes = [int(ControlMode.POLICY)] + [int(a.get("mode", ControlMode.REACTIVE)) for a in agents[1:]]
    return Scenario(
        name=name, road=road, x=col("x", 0.0), y=col("y", 0.0), yaw=col("yaw", 0.0), speed=col("speed", 0.0),
        length=col("length", 4.5), width=col("width", 1.9),
        agent_type=np.array([int(a.get("type", AgentType.VEHICLE)) for a in agents]),
        mode=np.array(modes), desired_speed=col("v0", 15.0), route=list(route), duration=duration, **extra)


from pathlib import Path  # noqa: E402

SUITES = Path(__file__).resolve().parents[1] / "scenarios"
