"""Enumerations of agent types and control modes (stored as int64 tensors)."""

from __future__ import annotations

from enum import IntEnum


class AgentType(IntEnum):
    VEHICLE = 0
    PEDESTRIAN = 1
    CYCLIST = 2
    STATIC = 3  # cones, barriers, parked objects


class ControlMode(IntEnum):
    POLICY = 0  # the ego, driven by the policy under test
    REACTIVE = 1  # IDM car-following + MOBIL lane changes + lane-following steering
    REPLAY = 2  # follows its logged trajectory
    STATIC = 3  # never moves
    HYBRID = 4  # follows its log until the ego comes close, then REACTIVE (needs a log)
    CONSTANT_VELOCITY = 5  # keeps its speed and heading
    LEARNED = 6  # a learned behaviour model (Simulator(behavior=...)) picks accel and steer; follows its log until released


VRU_TYPES = (AgentType.PEDESTRIAN, AgentType.CYCLIST)
