"""drivesim: a closed-loop driving simulator with a hierarchical world model."""

__version__ = "0.1.0"
