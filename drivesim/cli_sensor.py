"""Sensor world model commands (`drivesim reconstruct`, ...), registered by cli.py.

Kept beside cli.py so that the command file stays readable.
"""

from __future__ import annotations


def add_commands(sub) -> None:
    """Add the sensor-model subcommands to the `drivesim` parser's subparsers `sub`."""
