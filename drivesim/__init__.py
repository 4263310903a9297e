"""drivesim: a closed-loop driving simulator with a hierarchical world model."""

__version__ = "0.1.0"

from drivesim.envs import register_envs  # noqa: E402 - gymnasium.make("drivesim/Drive-v0") after `import drivesim`

register_envs()
