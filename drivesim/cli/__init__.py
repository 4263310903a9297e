"""The `drivesim` command: one module per command group, no library code (it parses options,
calls the library, prints and writes what the library returns, and turns errors into exit codes).

- `main.py`: the parser and `simulate`, `evaluate`, `import`, `bench`, `demo`.
- `traffic.py`: `realism`, `train traffic` (the learned traffic model).
- `events.py`: `generate`, `mine` (rare-event sets).
- `import_waymo.py`: `import womd` / `import gpudrive` (the per-file importers of io/importers.py, in worker processes).
- `sensor.py`: `reconstruct` (splat scene fitting).
- `refiner.py`: `refiner train / eval`, `simulate --render refined`.
- `train.py`: `train il`, `train rl`, `report training`.
- `options.py`: options and checks shared by the commands (outputs, exit codes, policies, suites).
"""

from drivesim.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
