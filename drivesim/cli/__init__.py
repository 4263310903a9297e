"""The `drivesim` command: one module per command group, no library code (it parses options,
calls the library, prints and writes what the library returns, and turns errors into exit codes).

- `commands.py`: the parser and `simulate`, `evaluate`, `import`, `bench`, `demo`.
- `traffic.py`: `realism`, `train traffic` (the learned traffic model).
- `events.py`: `generate`, `mine` (rare-event sets).
- `import_waymo.py`: `import womd` / `import gpudrive` (the per-file importers of io/importers.py, in worker processes).
- `sensor.py`: `reconstruct` (splat scene fitting).
- `refiner.py`: `refiner train / eval / render`.
- `train.py`: `train il`, `train rl`, `report training`.
- `options.py`: options and checks shared by the commands (outputs, exit codes, policies, suites).

`drivesim --help` is answered here, from `COMMANDS`, without importing torch or any command
module (well under a second); everything else builds the full parser of commands.py.
"""

from __future__ import annotations

import sys

from drivesim.cli.overview import COMMANDS, HelpFormatter, overview_parser  # noqa: F401 - the package API


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        overview_parser().parse_args(argv)  # prints the help or the version and exits (2 without a command)
    from drivesim.cli.commands import main as run

    return run(argv)


def __getattr__(name: str):
    if name == "build_parser":  # the full parser (imports every command module)
        from drivesim.cli.commands import build_parser

        return build_parser
    raise AttributeError(f"module 'drivesim.cli' has no attribute {name!r}")


__all__ = ["main", "build_parser", "COMMANDS", "HelpFormatter"]
