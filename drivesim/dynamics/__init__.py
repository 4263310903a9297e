from drivesim.dynamics.bicycle import BicycleConfig, apply_limits, inverse, kinematically_feasible, step

__all__ = ["BicycleConfig", "apply_limits", "inverse", "kinematically_feasible", "step"]
